"""The deployment files in deploy/ parse, agree with each other and with the project, and keep their security settings.

No cluster, no network, no docker: the files are read as text and YAML and checked against pyproject.toml, the CLI's
real argument parser, the preset registry and the sweep config model, so none of them can rot unnoticed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
MLFLOW = DEPLOY / "mlflow"
RAY_UP = DEPLOY / "ray-up" / "cluster.yaml"
SHARED = "/shared"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
REQUIREMENTS = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
# The project's image, at the project's version, in whichever registry account the user pushes it to.
PROJECT_IMAGE = re.compile(rf"^[a-z0-9.-]+(:[0-9]+)?/[^/:]+/clreg-sweep:{re.escape(VERSION)}$")
# Everything deploy/mlflow may run: these repositories only, each at an explicit, non-floating tag.
MLFLOW_STACK_IMAGES = {"postgres", "minio/minio", "minio/mc", "clreg-mlflow"}
# Variables whose value must come from a Secret (or .env); SECRET_VALUE: those whose value is itself secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
SECRET_VALUE = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE", re.IGNORECASE)
URI_PASSWORD = re.compile(r"://[^/@:\s]+:([^/@\s]+)@")


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def only(path: Path, kind: str) -> dict:
    docs = [d for d in load_all(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path.name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def walk(node):
    """Every dict and list inside `node`, depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


def containers(doc) -> list[dict]:
    return [c for n in walk(doc) if isinstance(n, dict)
            for key in ("containers", "initContainers") if isinstance(n.get(key), list) for c in n[key]]


def env_entries(doc) -> list[dict]:
    return [e for c in containers(doc) for e in c.get("env", [])]


def cluster_specs() -> dict[str, dict]:
    """Every Ray cluster spec shipped for KubeRay: the RayCluster's and the RayJob's."""
    return {"raycluster.yaml": only(KUBERAY / "raycluster.yaml", "RayCluster")["spec"],
            "rayjob.yaml": only(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"]}


def head_container(spec: dict) -> dict:
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    return head


def sweep_configmap() -> dict:
    return only(KUBERAY / "sweep-configmap.yaml", "ConfigMap")


def ray_up() -> dict:
    return yaml.safe_load(RAY_UP.read_text())


def ray_up_commands() -> list[str]:
    cfg = ray_up()
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in cfg.get(k) or []]


def compose() -> dict:
    return yaml.safe_load((MLFLOW / "compose.yaml").read_text())


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", path.read_text(), re.MULTILINE))


def deploy_text_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------------------------
# parsing


EXPECTED_YAML = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/sweep-configmap.yaml",
                 "kuberay/shared-storage.yaml", "ray-up/cluster.yaml", "mlflow/compose.yaml", "mlflow/kubernetes.yaml"]


def test_every_yaml_file_parses_into_mappings():
    found = sorted(str(p.relative_to(DEPLOY)) for p in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert set(EXPECTED_YAML) <= set(found), f"missing: {set(EXPECTED_YAML) - set(found)}"
    for rel in found:
        docs = load_all(DEPLOY / rel)
        assert docs, f"{rel} holds no document"
        assert all(isinstance(d, dict) for d in docs), f"{rel}: every document must be a mapping"
        for d in docs:
            if "apiVersion" in d:
                assert d.get("kind") and d.get("metadata", {}).get("name"), f"{rel}: a manifest without kind/name"


# ----------------------------------------------------------------------------------------------------------------
# versions and images


def test_one_ray_version_everywhere_inside_pyprojects_range():
    ray_req = REQUIREMENTS["ray"]
    versions: dict[str, str] = {"deploy/Dockerfile ARG RAY_VERSION": dockerfile_args(DEPLOY / "Dockerfile")
                                ["RAY_VERSION"]}
    for name, spec in cluster_specs().items():
        versions[f"{name} rayVersion"] = str(spec["rayVersion"])
    pins = [m for c in ray_up_commands() for m in re.findall(r"ray\[([^\]]*)\]==([0-9][0-9.]*)", c)]
    assert pins, "ray-up/cluster.yaml installs no pinned ray[...]==VERSION"
    for i, (extras, v) in enumerate(pins):
        versions[f"ray-up setup pin {i}"] = v
        assert set(extras.split(",")) == ray_req.extras, f"ray-up installs ray[{extras}], pyproject {ray_req.extras}"
    assert len(set(versions.values())) == 1, f"Ray versions differ: {versions}"
    (version,) = set(versions.values())
    assert Version(version) in ray_req.specifier, f"Ray {version} is outside pyproject's {ray_req}"
    extras = ",".join(sorted(ray_req.extras))
    assert f'"ray[{extras}]==${{RAY_VERSION}}"' in (DEPLOY / "Dockerfile").read_text()


def test_torch_and_mlflow_pins_inside_pyprojects_ranges():
    torch = dockerfile_args(DEPLOY / "Dockerfile")["TORCH_VERSION"]
    assert Version(torch) in REQUIREMENTS["torch"].specifier
    ray_up_torch = {v for c in ray_up_commands() for v in re.findall(r"\btorch==([0-9.]+)", c)}
    assert ray_up_torch == {torch}, f"ray-up installs torch {ray_up_torch}, the Dockerfile {torch}"
    mlflow = dockerfile_args(MLFLOW / "Dockerfile")["MLFLOW_VERSION"]
    assert Version(mlflow) in REQUIREMENTS["mlflow"].specifier, f"MLflow server {mlflow} vs {REQUIREMENTS['mlflow']}"


def test_dockerfile_builds_cpu_and_cuda_installs_the_whole_package_and_drops_root():
    text = (DEPLOY / "Dockerfile").read_text()
    args = dockerfile_args(DEPLOY / "Dockerfile")
    assert args["BASE"] in {"cpu", "cuda"}
    assert re.search(r"^\s*cpu\)\s+index=.*download\.pytorch\.org/whl/cpu", text, re.MULTILINE)
    assert re.search(r"^\s*cuda\)\s+index=", text, re.MULTILINE)
    assert re.search(r'pip install --index-url "\$index" "torch==\$\{TORCH_VERSION\}"', text)
    assert re.search(r"^RUN pip install \. ", text, re.MULTILINE), "the image must `pip install .` the project"
    # Every package setuptools packs (and the files pyproject names) must be copied into the build context.
    copied = set(re.findall(r"^COPY (?:--\S+ )*(.+?) \S+$", text, re.MULTILINE))
    copied = {p for line in copied for p in line.split()}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied, f"COPY lines: {copied}"
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must run as a non-root user"
    assert "ENTRYPOINT" not in re.sub(r"#.*", "", text), "KubeRay and `ray up` need the image without ENTRYPOINT"
    assert re.search(r'^CMD \["clreg-sweep"', text, re.MULTILINE)


def test_kuberay_images_are_the_project_image_at_the_project_version():
    images = [c["image"] for p in KUBERAY.glob("*.yaml") for d in load_all(p) for c in containers(d)]
    assert len(images) >= 4, images  # head + worker, in the RayCluster and in the RayJob
    assert len(set(images)) == 1, f"one image everywhere, got {set(images)}"
    assert PROJECT_IMAGE.match(images[0]), f"{images[0]} is not .../clreg-sweep:{VERSION}"


def test_mlflow_stack_images_are_pinned():
    mlflow_version = dockerfile_args(MLFLOW / "Dockerfile")["MLFLOW_VERSION"]
    images = [s["image"] for s in compose()["services"].values()]
    images += [c["image"] for d in load_all(MLFLOW / "kubernetes.yaml") for c in containers(d)]
    assert len(images) >= 8
    for image in images:
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{image}: pin a tag"
        name = repo if repo in MLFLOW_STACK_IMAGES else repo.rsplit("/", 1)[-1]
        assert name in MLFLOW_STACK_IMAGES, f"{image}: not one of {MLFLOW_STACK_IMAGES}"
        if name == "clreg-mlflow":
            assert tag == mlflow_version, f"{image}: tag must be deploy/mlflow/Dockerfile's MLflow {mlflow_version}"
    assert compose()["services"]["mlflow"]["build"]["dockerfile"] == "Dockerfile"


# ----------------------------------------------------------------------------------------------------------------
# the commands and the sweep they run


def clreg_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `clreg-sweep`) for each clreg-sweep invocation in the manifests and the guide."""
    lines: list[tuple[str, str]] = []
    for d in load_all(KUBERAY / "rayjob.yaml"):
        lines.append(("rayjob.yaml entrypoint", d["spec"]["entrypoint"]))
    for d in (d for p in [*KUBERAY.glob("*.yaml"), MLFLOW / "kubernetes.yaml"] for d in load_all(p)):
        for c in containers(d):
            for part in ("command", "args"):
                lines += [(f"{c['name']} {part}", " ".join(c.get(part) or []))]
    lines += [("ray-up/cluster.yaml", c) for c in ray_up_commands()]
    readme = (DEPLOY / "README.md").read_text()
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.DOTALL):
        lines += [("deploy/README.md", line) for line in block.replace("\\\n", " ").splitlines()]
    found = []
    for where, line in lines:
        tokens = shlex.split(line, comments=True)
        for i, tok in enumerate(tokens):
            # A command, not a resource named clreg-sweep (`kubectl get rayjob clreg-sweep`): first word, or after
            # `--` (kubectl exec, ray job submit), a separator or an environment assignment.
            if tok == "clreg-sweep" and (i == 0 or tokens[i - 1] in {"--", "&&", "||", ";", "|"}
                                         or re.fullmatch(r"\w+=\S*", tokens[i - 1])):
                rest = tokens[i + 1:]
            elif tok.startswith("clreg-sweep "):
                rest = shlex.split(tok)[1:]
            else:
                continue
            cut = next((j for j, t in enumerate(rest) if t in {"&&", "||", "|", ";", "&"}), len(rest))
            found.append((f"{where}: {line.strip()}", rest[:cut]))
    return found


def test_every_clreg_sweep_command_parses_with_the_real_cli():
    from orchestrator.cli import build_parser
    from search_spaces.presets import PRESETS

    commands = clreg_commands()
    subcommands = {argv[0] for _, argv in commands if argv}
    assert {"sweep", "validate", "resume", "report"} <= subcommands, subcommands
    assert any(w.startswith("rayjob.yaml entrypoint") for w, _ in commands)
    for where, argv in commands:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"not a valid clreg-sweep command: {where}")
        if getattr(args, "preset", None):
            assert args.preset in PRESETS.names(), f"{where}: unknown preset {args.preset}"


def test_rayjob_runs_a_sweep_on_the_mounted_sweep_file():
    from orchestrator.cli import build_parser

    entrypoint = only(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["entrypoint"]
    args = build_parser().parse_args(shlex.split(entrypoint)[1:])
    assert args.command == "sweep" and args.file
    path = Path(args.file)
    spec = cluster_specs()["rayjob.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in head_container(spec)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["headGroupSpec"]["template"]["spec"]["volumes"]}
    sources = [volumes[n]["configMap"]["name"] for n, mp in mounts.items()
               if mp == str(path.parent) and "configMap" in volumes[n]]
    assert sources == [sweep_configmap()["metadata"]["name"]], f"{path.parent} is not the sweep ConfigMap's mount"
    assert path.name in sweep_configmap()["data"]


def example_sweep():
    from orchestrator.cli import build_parser
    from orchestrator.config_files import apply_overrides
    from orchestrator.sweep_config import SweepConfig

    entrypoint = only(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["entrypoint"]
    args = build_parser().parse_args(shlex.split(entrypoint)[1:])
    data = yaml.safe_load(sweep_configmap()["data"][Path(args.file).name])
    overrides = ([f"space={args.preset}"] if args.preset else []) + args.set
    return SweepConfig.model_validate(apply_overrides(data, overrides))


def test_example_sweep_validates_and_keeps_everything_on_shared_storage():
    from search_spaces.presets import PRESETS

    cfg = example_sweep()
    assert isinstance(cfg.space, dict) or cfg.space in PRESETS.names(), cfg.space
    for field, path in {"storage.dir": cfg.storage.dir, "base.prepare.cache_dir": cfg.base.prepare.cache_dir,
                        "base.output_dir": cfg.base.output_dir}.items():
        assert path.startswith(SHARED + "/"), f"{field} {path} is not on the shared volume {SHARED}"
    for field, path in {"base.data.path": cfg.base.data.path, "base.model": cfg.base.model.name_or_path}.items():
        assert path is None or not path.startswith("/") or path.startswith(SHARED + "/"), f"{field} {path}"
    assert cfg.base.train.gpus_per_worker > 0, "the cluster example trains on GPUs"


def test_example_sweep_logs_to_the_in_cluster_mlflow_service():
    cfg = example_sweep()
    uri = cfg.mlflow.tracking_uri
    m = re.fullmatch(r"http://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)", uri or "")
    assert m, f"mlflow.tracking_uri {uri!r} must be the MLflow Service's http://NAME:PORT"
    service = next(d for d in load_all(MLFLOW / "kubernetes.yaml")
                   if d["kind"] == "Service" and d["metadata"]["name"] == m.group(1))
    assert int(m.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    for name, spec in cluster_specs().items():
        env = {e["name"]: e.get("value") for e in head_container(spec)["env"]}
        assert env.get("MLFLOW_TRACKING_URI") == uri, f"{name}: head MLFLOW_TRACKING_URI differs from the sweep file"


def test_example_sweep_fits_the_gpu_worker_group():
    cfg = example_sweep()
    trial_gpus = cfg.base.train.num_workers * cfg.base.train.gpus_per_worker
    trial_cpus = cfg.base.train.num_workers * cfg.base.train.cpus_per_worker
    for name, spec in cluster_specs().items():
        (group,) = spec["workerGroupSpecs"]
        (worker,) = group["template"]["spec"]["containers"]
        pod_gpus = int(worker["resources"]["limits"]["nvidia.com/gpu"])
        pod_cpus = float(worker["resources"]["limits"]["cpu"])
        assert trial_gpus <= pod_gpus and trial_cpus <= pod_cpus, f"{name}: one trial does not fit one worker pod"
        per_pod = min(pod_gpus // trial_gpus, int(pod_cpus // trial_cpus))
        assert cfg.search.max_concurrent <= group["maxReplicas"] * per_pod, \
            f"{name}: {cfg.search.max_concurrent} concurrent trials need more than maxReplicas={group['maxReplicas']}"


# ----------------------------------------------------------------------------------------------------------------
# cluster shape


def test_rayjob_uses_the_raycluster_spec_and_cleans_up():
    specs = cluster_specs()
    assert specs["rayjob.yaml"] == specs["raycluster.yaml"], "rayjob.yaml's rayClusterSpec drifted from raycluster"
    job = only(KUBERAY / "rayjob.yaml", "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0


def test_head_has_no_gpus_and_the_gpu_group_autoscales():
    for name, spec in cluster_specs().items():
        assert spec["enableInTreeAutoscaling"] is True, name
        head = spec["headGroupSpec"]
        assert str(head["rayStartParams"]["num-gpus"]) == "0", name
        for c in head["template"]["spec"]["containers"]:
            assert not any("gpu" in k for part in c.get("resources", {}).values() for k in part), name
        groups = spec["workerGroupSpecs"]
        assert groups, name
        for g in groups:
            assert 0 <= g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"], (name, g["groupName"])
            assert g["minReplicas"] < g["maxReplicas"], f"{name}: {g['groupName']} cannot scale"
            (c,) = g["template"]["spec"]["containers"]
            assert int(c["resources"]["limits"]["nvidia.com/gpu"]) > 0, name


def test_every_ray_pod_mounts_the_shared_rwx_volume_at_the_same_path():
    pvc = only(KUBERAY / "shared-storage.yaml", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, spec in cluster_specs().items():
        templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for t in templates:
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in t["spec"]["volumes"]
                      if "persistentVolumeClaim" in v}
            for c in t["spec"]["containers"]:
                shared = [m["mountPath"] for m in c["volumeMounts"] if claims.get(m["name"]) == pvc["metadata"]["name"]]
                assert shared == [SHARED], f"{name} {c['name']}: mounts {shared}, expected [{SHARED!r}]"


def test_ray_up_has_a_cpu_head_an_autoscaled_gpu_worker_and_installs_the_project():
    cfg = ray_up()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert not re.match(r"^(g|p)\d", head["node_config"]["InstanceType"]), "the head should be a CPU instance"
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert workers and all(re.match(r"^(g|p)\d", w["node_config"]["InstanceType"]) for w in workers.values())
    assert all(w["min_workers"] < w["max_workers"] <= cfg["max_workers"] for w in workers.values())
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--head" in head_start and "--num-gpus=0" in head_start
    assert any(re.search(r"pip install .*~/clreg-sweep", c) for c in cfg["setup_commands"])
    assert cfg["file_mounts"]["~/clreg-sweep"] == "."
    assert any(re.search(rf"mount -t nfs4? .* {SHARED}\b", c) for c in cfg["setup_commands"]), \
        f"no setup command mounts shared storage at {SHARED}"


# ----------------------------------------------------------------------------------------------------------------
# security


def test_ray_token_authentication_is_on_everywhere():
    for name, spec in cluster_specs().items():
        assert spec["authOptions"]["mode"] == "token", name
        assert spec["authOptions"].get("secretName"), f"{name}: the token comes from a Secret the user creates"
        assert Version(str(spec["rayVersion"])) >= Version("2.52.0"), "token auth needs Ray >= 2.52"
    for path in [*KUBERAY.glob("*.yaml"), MLFLOW / "kubernetes.yaml"]:
        for e in (e for d in load_all(path) for e in env_entries(d)):
            assert e["name"] != "RAY_AUTH_MODE" or e.get("value") == "token", f"{path.name}: {e}"
    for path in deploy_text_files():
        text = path.read_text()
        assert not re.search(r"\bdisabled\b", text, re.IGNORECASE), f"{path}: mentions 'disabled'"
        for m in re.finditer(r"RAY_AUTH_MODE\s*[=:]\s*[\"']?(\w+)", text):
            assert m.group(1) == "token", f"{path}: RAY_AUTH_MODE={m.group(1)}"
    # ray up: the token file reaches every node, and every `ray start` runs with token auth.
    cfg = ray_up()
    assert "~/.ray/auth_token" in cfg["file_mounts"].values()
    starts = [c for c in ray_up_commands() if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c.split("ray start")[0] for c in starts), starts


def test_no_service_leaves_the_cluster():
    kinds_seen = set()
    for path in [*MLFLOW.glob("*.yaml"), *KUBERAY.glob("*.yaml")]:
        for d in load_all(path):
            kinds_seen.add(d.get("kind"))
            assert d.get("kind") not in {"Ingress", "Route", "Gateway", "HTTPRoute"}, f"{path.name}: {d['kind']}"
            if d.get("kind") == "Service":
                assert d["spec"].get("type", "ClusterIP") == "ClusterIP", f"{path.name}: {d['metadata']['name']}"
            for n in walk(d):
                if isinstance(n, dict):
                    assert not n.get("hostNetwork") and "hostPort" not in n, f"{path.name}: host networking"
    assert "Service" in kinds_seen
    for name, spec in cluster_specs().items():
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", name


def test_compose_publishes_ports_on_loopback_only():
    published = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                published.append((name, port.get("host_ip"), port))
            else:
                published.append((name, str(port).split(":")[0] if str(port).count(":") == 2 else None, port))
    assert published and any(n == "mlflow" for n, _, _ in published)
    for name, host_ip, port in published:
        assert host_ip == "127.0.0.1", f"compose service {name} publishes {port} beyond 127.0.0.1"


def test_mlflow_server_uses_postgres_and_proxied_s3_artifacts():
    deployment = next(d for d in load_all(MLFLOW / "kubernetes.yaml")
                      if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    (server,) = containers(deployment)
    k8s_env = {e["name"]: e for e in server["env"]}
    service = compose()["services"]["mlflow"]
    for where, argv, env in [("kubernetes", server["args"], {k: v.get("value") for k, v in k8s_env.items()}),
                             ("compose", service["command"], service["environment"])]:
        assert argv[0] == "server" and "--serve-artifacts" in argv, where
        assert argv[argv.index("--artifacts-destination") + 1].startswith("s3://"), where
        assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://"), where
        assert env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://"), where
    assert k8s_env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-credentials"


def test_no_credential_is_written_down():
    # Kubernetes: no shipped Secret objects; every credential-like variable comes from a Secret.
    for path in [*KUBERAY.glob("*.yaml"), MLFLOW / "kubernetes.yaml"]:
        for d in load_all(path):
            assert d.get("kind") != "Secret", f"{path.name} ships a Secret; create it with kubectl instead"
            for e in env_entries(d):
                if SECRET_NAME.search(e["name"]):
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{path.name}: {e}"
                for pw in URI_PASSWORD.findall(str(e.get("value", ""))):
                    assert re.fullmatch(r"\$\(\w+\)", pw), f"{path.name}: literal password in {e['name']}"
            for n in walk(d):
                if isinstance(n, dict) and "secretRef" in n:
                    assert set(n["secretRef"]) <= {"name", "optional"}
    # compose: credentials are interpolated from .env, never literal.
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", str(value)), f"compose {name}: {key}={value}"
            for pw in URI_PASSWORD.findall(str(value)):
                assert re.fullmatch(r"\$\{\w+\}", pw), f"compose {name}: literal password in {key}"
    # the env template holds placeholders only, and names every variable compose needs.
    example = dict(line.split("=", 1) for line in (MLFLOW / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for key, value in example.items():
        if SECRET_VALUE.search(key):
            assert value == "change-me", f".env.example: {key} must be the placeholder change-me"
    needed = set(re.findall(r"\$\{(\w+)", (MLFLOW / "compose.yaml").read_text()))
    assert needed <= set(example), f".env.example lacks {needed - set(example)}"
    # nothing that looks like a real key anywhere under deploy/
    leaked = re.compile(r"AKIA[0-9A-Z]{16}|ghp_[0-9A-Za-z]{20,}|hf_[0-9A-Za-z]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY")
    for path in deploy_text_files():
        assert not leaked.search(path.read_text()), f"{path}: looks like a credential"


def test_pyproject_ray_requirement_is_the_one_checked_here():
    # Guards the test itself: the range it compares against is pyproject's ray requirement, with Tune and Train.
    ray_req = REQUIREMENTS["ray"]
    assert {"tune", "train"} <= ray_req.extras and isinstance(ray_req.specifier, SpecifierSet)
    assert ray_req.specifier, "pyproject.toml must bound ray's version"
