"""`validate` (and `sweep`, before it writes or starts anything) checks what a sweep would otherwise find out inside
its trials: the MLflow and Optuna stores, every point of the space against `base` (method, its hyperparameters,
layer depth, resources), the model folder (config, safetensors weights, tokenizer, architecture, LoRA targets), a
hub name with no network, and `prepare.oracle_path`.

The model folders are real: a 2-layer Llama saved with `save_pretrained` (safetensors) and a tokenizer trained by
`trainables.model.tiny`, built once per module and copied; each case breaks one file.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.space_check import space_points
from orchestrator.sweep_config import SweepConfig
from search_spaces.space import SearchSpace
from tests.orchestrator.conftest import told_sweep
from tests.refusals.harness import Workspace, qa_rows

MODEL_LAYERS = 2


@pytest.fixture(scope="module")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid local model folder: 2-layer Llama (model.safetensors, config.json) and its tokenizer files."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainables.model.tiny import train_tokenizer

    folder = tmp_path_factory.mktemp("model") / "model"
    texts = [r[k] for r in qa_rows("forget", 4) + qa_rows("retain", 6) + qa_rows("holdout", 3) for k in r]
    tokenizer = train_tokenizer(texts, 300)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=MODEL_LAYERS, num_attention_heads=2, num_key_value_heads=2,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_model(ws: Workspace, template: Path, damage: Callable[[Path], None] = lambda folder: None) -> Path:
    """A copy of the template model in the workspace, damaged by `damage`."""
    folder = ws.root / "model"
    shutil.copytree(template, folder)
    damage(folder)
    return folder


def with_model(ws: Workspace, folder: Path | str, **model) -> dict:
    """The workspace sweep on the model at `folder`, its CLReg layer within the 2-layer model."""
    base = {**ws.trial, "model": {"name_or_path": str(folder), **model}}
    return ws.sweep(base=base)


def with_space(ws: Workspace, parameters: dict, **base) -> dict:
    return ws.sweep(base={**ws.trial, **base}, space={"parameters": parameters})


def with_attack(ws: Workspace, objective: str, **attack) -> dict:
    """The workspace sweep with a third objective `objective` measured by an attack configured as `attack`."""
    return ws.sweep(base={**ws.trial, "attack": attack},
                    objectives=[{"metric": "forget_quality"}, {"metric": "model_utility"}, {"metric": objective}])


def with_constraints(ws: Workspace, *constraints: dict, objectives: list[dict] | None = None, **base) -> dict:
    """The workspace sweep with `search.constraints`, its base updated by `base` (top-level trial sections)."""
    sweep = ws.sweep(base={**ws.trial, **base}, **({"objectives": objectives} if objectives else {}))
    sweep["search"] = {**sweep["search"], "constraints": list(constraints)}
    return sweep


def with_warm_start(ws: Workspace, earlier_space: dict) -> dict:
    """The workspace sweep warm-started from an earlier sweep folder (sweep file and empty study) of `earlier_space`."""
    earlier = SweepConfig.model_validate({"name": "earlier", "space": earlier_space,
                                          "storage": {"dir": str(ws.root / "sweeps")}})
    told_sweep(earlier, [], 8)
    sweep = ws.sweep()
    sweep["search"] = {**sweep["search"], "warm_start": [str(ws.root / "sweeps" / "earlier")]}
    return sweep


def pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04N.")  # a pickle; it must never be unpickled


def no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)


def broken_config(folder: Path) -> None:
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 16,')


def config_edit(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return edit


def missing_shard(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}))


def text_file(ws: Workspace, name: str) -> Path:
    """A file in the workspace that holds text, not what its name promises."""
    path = ws.root / name
    path.write_text("my notes")
    return path


def oracle_dir(ws: Workspace, files: dict[str, str]) -> str:
    folder = ws.root / "oracle"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return str(folder)


def with_oracle(ws: Workspace, files: dict[str, str]) -> dict:
    return ws.sweep(base={**ws.trial, "prepare": {**ws.trial["prepare"], "enabled": False,
                                                  "oracle_path": oracle_dir(ws, files)}})


WORKERS = {"train.num_workers": {"type": "grid", "values": [1, 512]}}

# case id -> (command, sweep builder (workspace, model template, port), fragments the message names, fragments it
# must not show). `{root}` and `{port}` in fragments are the workspace and the closed port.
CASES: dict[str, tuple[str, Callable[[Workspace, Path, int], dict], list[str], list[str]]] = {
    "tracking-sqlite-unwritable": (
        "validate", lambda ws, m, p: ws.sweep(mlflow={"tracking_uri": "sqlite:////proc/x/mlflow.db"}),
        ["MLflow tracking store sqlite:////proc/x/mlflow.db cannot be used", "cannot create anything in /proc"], []),
    "tracking-sqlite-not-a-database": (
        "validate", lambda ws, m, p: ws.sweep(mlflow={"tracking_uri": f"sqlite:///{text_file(ws, 'notes.db')}"}),
        ["{root}/notes.db is not an SQLite database"], []),
    "tracking-http-closed": (
        "validate", lambda ws, m, p: ws.sweep(mlflow={"tracking_uri": f"http://u:hunter2@127.0.0.1:{p}"}),
        ["MLflow tracking store http://u:***@127.0.0.1:{port} cannot be used"], ["hunter2"]),
    "optuna-sqlite-unwritable": (
        "validate", lambda ws, m, p: ws.sweep(storage={"dir": str(ws.root / "sweeps"),
                                                      "optuna_url": "sqlite:////proc/x/optuna.db"}),
        ["storage.optuna_url sqlite:////proc/x/optuna.db: cannot create anything in /proc"], []),
    "optuna-postgres-closed": (
        "validate", lambda ws, m, p: ws.sweep(storage={"dir": str(ws.root / "sweeps"),
                                                      "optuna_url": f"postgresql://user:secret@127.0.0.1:{p}/db"}),
        ["storage.optuna_url postgresql://user:***@127.0.0.1:{port}/db"], ["secret"]),
    "optuna-not-a-url": (
        "validate", lambda ws, m, p: ws.sweep(storage={"dir": str(ws.root / "sweeps"), "optuna_url": "optuna.db"}),
        ["storage.optuna_url 'optuna.db' is not a database URL; allowed: sqlite:///"], []),
    "space-method-choice-unknown": (
        "validate", lambda ws, m, p: with_space(ws, {"method.name": {"type": "categorical",
                                                                     "choices": ["simnpo", "foo"]}}),
        ["space.method.name: choice 'foo' is not a method; allowed: ceu, dpo, gradascent, graddiff, npo, pdu"], []),
    "space-hyperparameter-not-taken": (
        "validate", lambda ws, m, p: with_space(ws, {
            "method.name": {"type": "categorical", "choices": ["npo", "graddiff"]},
            "method.beta": {"type": "float", "low": 0.05, "high": 1.0}}),
        ["space.method.beta: graddiff does not take beta (when method.name=graddiff); its parameters: alpha, gamma"],
        []),
    "space-choice-against-base-hyperparameter": (
        "validate", lambda ws, m, p: with_space(ws, {"method.name": {"type": "grid", "values": ["simnpo", "graddiff"]}},
                                                method={"name": "simnpo", "delta": 0.5}),
        ["space.method.name: grid value 'graddiff' with base.method: method.delta is not a parameter of graddiff"],
        []),
    "space-choice-needs-required-hyperparameter": (
        "validate", lambda ws, m, p: with_space(ws, {"method.name": {"type": "categorical",
                                                                     "choices": ["simnpo", "pdu"]}}),
        ["space.method.name: choice 'pdu' with base.method: method.eps is required by pdu"], []),
    "space-grid-layer-too-deep": (
        "validate", lambda ws, m, p: with_space(ws, {"clreg.layer": {"type": "grid", "values": [2, 12]}}),
        ["space.clreg.layer: grid value 12 is deeper than the 8-layer model; allowed: last-1..last-8 or 0..7"], []),
    "space-grid-workers-beyond-machine": (
        "validate", lambda ws, m, p: with_space(ws, WORKERS),
        ["space.train.num_workers: grid value 512:", "does not fit on this machine"], []),
    "space-int-range-workers-beyond-machine": (
        "validate", lambda ws, m, p: with_space(ws, {"train.num_workers": {"type": "int", "low": 1, "high": 999}}),
        ["space.train.num_workers: range bound 999:", "does not fit on this machine"], []),
    "model-pickle-only": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, pickle_only)),
        ["model.name_or_path '{root}/model': weights are read as safetensors only, and it holds pytorch_model.bin",
         "it was not opened"], []),
    "model-shard-missing": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, missing_shard)),
        ["model.safetensors.index.json lists 1 shard(s) that are not there: model-00001-of-00002.safetensors"], []),
    "model-no-tokenizer": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, no_tokenizer)),
        ["model.name_or_path '{root}/model': no tokenizer files (one of tokenizer.json"], []),
    "model-config-not-json": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, broken_config)),
        ["model.name_or_path '{root}/model': {root}/model/config.json is not valid JSON (Expecting"], []),
    "model-type-unknown": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, config_edit(model_type="llamma"))),
        ["config.json: model_type 'llamma' is not known to transformers; allowed: a transformers model type"], []),
    "model-not-a-causal-lm": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m, config_edit(model_type="t5"))),
        ["model.name_or_path '{root}/model': the model does not build as a causal LM from its config.json",
         "T5Config"], []),
    "model-lora-target-missing": (
        "validate", lambda ws, m, p: with_model(ws, free_model(ws, m),
                                                lora={"target_modules": ["q_proj", "qkv_proj"]}),
        ["model.lora.target_modules: 'qkv_proj' match no module of the model; its modules include:", "k_proj"], []),
    "tiny-lora-target-missing": (
        "validate", lambda ws, m, p: ws.sweep(base={**ws.trial, "model": {"tiny": {"num_layers": 8},
                                                                          "lora": {"target_modules": ["attn"]}}}),
        ["model.lora.target_modules: 'attn' match no module of the model"], []),
    "model-hub-name-offline": (
        "validate", lambda ws, m, p: with_model(ws, "clreg-test-org/no-such-model"),
        ["model.name_or_path 'clreg-test-org/no-such-model': not in the local Hugging Face cache and the hub cannot "
         "be reached (HF_HUB_OFFLINE is set); download it and point model.name_or_path at the folder"], []),
    "oracle-reference-not-json": (
        "validate", lambda ws, m, p: with_oracle(ws, {"oracle_reference.json": "{"}),
        ["prepare.oracle_path: {root}/oracle/oracle_reference.json is not an oracle reference"], []),
    "oracle-folder-without-reference": (
        "validate", lambda ws, m, p: with_oracle(ws, {"notes.txt": "the retain model is elsewhere"}),
        ["prepare.oracle_path {root}/oracle: holds neither oracle_reference.json nor a saved evaluation"], []),
    "oracle-saved-eval-broken": (
        "validate", lambda ws, m, p: with_oracle(ws, {"eval_aggregates.json": "[1,", "eval_per_item.json": "{}"}),
        ["prepare.oracle_path: the saved evaluation in {root}/oracle does not read"], []),
    # `sweep` refuses the same before it claims a folder, creates a store or starts Ray.
    "sweep-tracking-sqlite-unwritable": (
        "sweep", lambda ws, m, p: ws.sweep(mlflow={"tracking_uri": "sqlite:////proc/x/mlflow.db"}),
        ["MLflow tracking store sqlite:////proc/x/mlflow.db cannot be used"], []),
    "sweep-optuna-postgres-closed": (
        "sweep", lambda ws, m, p: ws.sweep(storage={"dir": str(ws.root / "sweeps"),
                                                   "optuna_url": f"postgresql://user:secret@127.0.0.1:{p}/db"}),
        ["storage.optuna_url postgresql://user:***@127.0.0.1:{port}/db"], ["secret"]),
    "sweep-grid-layer-too-deep": (
        "sweep", lambda ws, m, p: with_space(ws, {"clreg.layer": {"type": "grid", "values": ["last-1", "last-9"]}}),
        ["space.clreg.layer: grid value 'last-9' is deeper than the 8-layer model"], []),
    "sweep-grid-workers-beyond-machine": (
        "sweep", lambda ws, m, p: with_space(ws, WORKERS), ["space.train.num_workers: grid value 512:"], []),
    "attack-objective-without-final-attacks": (
        "validate", lambda ws, m, p: with_attack(ws, "relearn/robustness", when="front"),
        ["objectives[2].metric relearn/robustness is measured by an attack, and base.attack.when is 'front'",
         "allowed: base.attack.when final"], []),
    "attack-objective-bits-not-quantized": (
        "validate", lambda ws, m, p: with_attack(ws, "quant2/forget_prob", when="final"),
        ["objectives[2].metric quant2/forget_prob: 2 bits is not in base.attack.quantize.bits [8, 4]"], []),
    "attack-objective-metric-not-measured": (
        "validate", lambda ws, m, p: with_attack(ws, "relearn/forget_truth_ratio", when="final"),
        ["objectives[2].metric relearn/forget_truth_ratio: forget_truth_ratio is not in base.attack.metrics"], []),
    "attack-searched": (
        "validate", lambda ws, m, p: with_space(ws, {"attack.relearn.steps": {"type": "grid", "values": [1, 2]}}),
        ["space: attack.relearn.steps cannot be searched", "one attack protocol"], []),
    "constraint-metric-unknown": (
        "validate", lambda ws, m, p: with_constraints(ws, {"metric": "utility", "min": 0.9}),
        ["search.constraints[0].metric 'utility' is reported by no metric; allowed:", "model_utility"], []),
    "constraint-attack-metric-not-measured": (
        "validate", lambda ws, m, p: with_constraints(ws, {"metric": "relearn/robustness", "min": 0.5}),
        ["search.constraints[0].metric relearn/robustness is measured by an attack, and base.attack.when is "
         "'never'"], []),
    "constraint-attack-metric-relative": (
        "validate", lambda ws, m, p: with_constraints(ws, {"metric": "quant/Q", "min": 0.5, "of": "target"},
                                                      attack={"when": "final"}),
        ["search.constraints[0]: quant/Q is measured by an attack, which the target point is not scored with",
         "drop `of`"], []),
    "constraint-relative-to-no-oracle": (
        "validate", lambda ws, m, p: with_constraints(
            ws, {"metric": "model_utility", "min": 0.9, "of": "oracle"}, objectives=[{"metric": "model_utility"}],
            model={"name_or_path": str(free_model(ws, m))}, prepare={**ws.trial["prepare"], "enabled": False}),
        ["search.constraints[0]: of oracle needs an oracle model"], []),
    "warm-start-other-parameters": (
        "validate", lambda ws, m, p: with_warm_start(ws, {"parameters": {"clreg.tau": {"type": "float", "low": 0.1,
                                                                                      "high": 0.9}}}),
        ["search.warm_start[0] {root}/sweeps/earlier: parameter clreg.lambda is searched only by this sweep; allowed: "
         "a sweep of the same parameters (clreg.tau, clreg.lambda, clreg.layer, train.lr)"], []),
    "warm-start-not-a-sweep": (
        "validate", lambda ws, m, p: {**(sweep := ws.sweep()), "search": {**sweep["search"],
                                                                          "warm_start": [str(ws.root / "gone")]}},
        ["search.warm_start[0]: {root}/gone is not a sweep directory: it does not exist"], []),
    "sweep-model-pickle-only": (
        "sweep", lambda ws, m, p: with_model(ws, free_model(ws, m, pickle_only)),
        ["weights are read as safetensors only"], []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_anything_runs(case: str, workspace: Workspace, model_template: Path, port: int,
                                      capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    command, build, fragments, hidden = CASES[case]
    path = workspace.write_sweep(build(workspace, model_template, port))
    err = workspace.refused([command, str(path)], capsys,
                            [f.format(root=workspace.root, port=port) for f in fragments])
    for secret in hidden:
        assert secret not in err


def test_a_space_of_method_choices_with_conditional_hyperparameters_validates(workspace: Workspace,
                                                                               capsys: pytest.CaptureFixture) -> None:
    """Each method gets only the hyperparameters it takes (`when`), PDU its required eps: every combination resolves."""
    path = workspace.write_sweep(workspace.sweep(space={
        "parameters": {
            "method.name": {"type": "categorical", "choices": ["simnpo", "npo", "graddiff", "pdu"]},
            "method.beta": {"type": "float", "low": 0.05, "high": 1.0, "when": {"method.name": ["simnpo", "npo"]}},
            "clreg.layer": {"type": "grid", "values": ["last-1", 3]},
            "train.num_workers": {"type": "grid", "values": [1]}},
        "fixed": {"method.eps": {"value": 0.3, "when": {"method.name": "pdu"}}}}))
    assert cli.main(["validate", str(path)]) == 0
    assert "valid" in capsys.readouterr().out and "graddiff" in path.read_text()


def test_a_valid_model_folder_validates(workspace: Workspace, model_template: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """The template every model case breaks is itself accepted, LoRA targets included."""
    sweep = with_model(workspace, free_model(workspace, model_template), lora={"target_modules": ["q_proj", "v_proj"]})
    sweep["base"]["clreg"] = {"layer": "last-2"}
    assert cli.main(["validate", str(workspace.write_sweep(sweep))]) == 0
    assert f"{MODEL_LAYERS}-layer" in capsys.readouterr().out


def test_points_follow_conditions_and_past_the_limit_cover_every_value() -> None:
    space = SearchSpace.from_dict({"parameters": {
        "method.name": {"type": "grid", "values": ["simnpo", "npo", "graddiff"]},
        "method.beta": {"type": "categorical", "choices": [0.1, 0.2], "when": {"method.name": "npo"}},
        "clreg.tau": {"type": "float", "low": 0.1, "high": 1.0},
        "train.num_workers": {"type": "int", "low": 1, "high": 6, "step": 2}}})
    points, complete = space_points(space, num_layers=8)
    assert complete and len(points) == (1 + 2 + 1) * 2  # beta only with npo; workers at 1 and 5, tau at its low end
    assert {p["train.num_workers"] for p in points} == {1, 5} and {p["clreg.tau"] for p in points} == {0.1}
    assert all(("method.beta" in p) == (p["method.name"] == "npo") for p in points)
    covering, complete = space_points(space, num_layers=8, limit=3)
    assert not complete and len(covering) < len(points)
    assert {p["method.name"] for p in covering} == {"simnpo", "npo", "graddiff"}
    assert {p.get("method.beta") for p in covering} >= {0.1, 0.2}
    assert {p["train.num_workers"] for p in covering} == {1, 5}
