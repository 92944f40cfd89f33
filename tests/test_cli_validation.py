"""`clreg-sweep run` refuses bad configs and bad data with exit code 2 before any Ray / DeepSpeed process starts.

Every case runs `orchestrator.cli.main(["run", ...])` in-process on a config written to `tmp_path`. `ray.init` is
replaced by a function that raises, so a bad input that slips past validation fails the test at once (instead of
starting a cluster), and a valid config is shown to reach exactly that point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator import cli
from orchestrator.config_files import load_config
from orchestrator.preflight import preflight
from trainables.config import TrialConfig


class RayStarted(Exception):
    """Raised by the patched `ray.init`: the command got past validation."""


# --- a small valid TOFU-layout directory ---------------------------------------------------------------------------

def _qa(prefix: str, n: int) -> list[dict]:
    return [{"question": f"{prefix} question {i}?", "answer": f"{prefix} answer number {i}."} for i in range(n)]


FORGET = _qa("forget", 4)
RETAIN = _qa("retain", 6)
HOLDOUT = _qa("holdout", 3)


def _perturbed(rows: list[dict]) -> list[dict]:
    return [{**r, "paraphrased_answer": "In other words, " + r["answer"],
             "perturbed_answer": [f"wrong {k}: {r['answer']}" for k in range(3)]} for r in rows]


def _write_json(path: Path, rows) -> None:
    path.write_text(json.dumps(rows), encoding="utf-8")


def _tofu_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / "forget10.json", FORGET)
    _write_json(root / "forget10_perturbed.json", _perturbed(FORGET))
    _write_json(root / "retain90.json", RETAIN)
    _write_json(root / "holdout10.json", HOLDOUT)
    return root


# --- ways to break the data, one per case --------------------------------------------------------------------------

def _only_forget05(d: Path) -> None:
    (d / "forget10.json").unlink()
    (d / "forget10_perturbed.json").unlink()
    _write_json(d / "forget05.json", FORGET[:2])


def _malformed_forget(d: Path) -> None:
    (d / "forget10.json").write_text("{not json", encoding="utf-8")


def _retain_without_answer(d: Path) -> None:
    _write_json(d / "retain90.json", [{"question": r["question"]} for r in RETAIN])


def _empty_perturbed(d: Path) -> None:
    rows = _perturbed(FORGET)
    rows[1]["perturbed_answer"] = []
    _write_json(d / "forget10_perturbed.json", rows)


def _overlap(d: Path) -> None:
    _write_json(d / "retain90.json", RETAIN + [FORGET[2]])


def _empty_forget(d: Path) -> None:
    _write_json(d / "forget10.json", [])
    _write_json(d / "forget10_perturbed.json", [])


def _retain_missing(d: Path) -> None:
    (d / "retain90.json").unlink()


def _no_paraphrases(d: Path) -> None:
    rows = _perturbed(FORGET)
    for r in rows:
        del r["paraphrased_answer"]
        del r["perturbed_answer"]
    _write_json(d / "forget10_perturbed.json", rows)


# --- harness ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A valid config file in `tmp_path` (TOFU layout data, tiny-llama with 8 layers) and a guarded `ray.init`."""
    data = _tofu_dir(tmp_path / "data")
    config = {
        "data": {"benchmark": "tofu", "path": str(data)},
        "model": {"tiny": {"num_layers": 8}},
        "prepare": {"cache_dir": str(tmp_path / "cache")},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(config))

    def no_ray(*args, **kwargs):
        raise RayStarted("ray.init was called")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)  # relative model paths such as ./nope/model resolve inside tmp_path
    # rich folds lines at the console width (80 when not a terminal), even inside long tmp paths: widen it.
    monkeypatch.setattr(cli.console, "width", 10_000)
    return {"root": tmp_path, "data": data, "config": path, "dict": config}


def _nothing_started(root: Path) -> None:
    assert not ray.is_initialized()
    assert not (root / "runs").exists(), "a run directory was created"
    assert not (root / "cache" / "prepared").exists(), "a prepared-model cache entry was created"


def _words(text: str) -> str:
    """Whitespace collapsed, so a message is compared independently of how rich breaks its lines."""
    return " ".join(text.split())


Case = tuple[list[str], Callable[[Path], None] | None, list[str]]

# (extra --set overrides, data breaker, fragments the error must contain)
CASES: dict[str, Case] = {
    "layer-last-9-of-8": (["clreg.layer=last-9"], None, ["clreg.layer 'last-9'", "last-1..last-8", "0..7"]),
    "layer-absolute-8-of-8": (["clreg.layer=8"], None, ["clreg.layer 8", "last-1..last-8", "0..7"]),
    "layer-negative": (["clreg.layer=-1"], None, ["clreg.layer", ">= 0"]),
    "layer-syntax": (["clreg.layer=top-1"], None, ["clreg.layer", "'last-k'"]),
    "unknown-method": (["method.name=foo"], None,
                       ["unknown method 'foo'", "gradascent", "graddiff", "npo", "pdu", "simnpo", "undial"]),
    "foreign-param": (["method.name=graddiff", "method.beta=0.5"], None,
                      ["method.beta is not a parameter of graddiff", "alpha, gamma"]),
    "pdu-without-eps": (["method.name=pdu"], None, ["method.eps is required by pdu"]),
    "tau-zero": (["clreg.tau=0"], None, ["clreg.tau", "greater than 0", "(got 0)"]),
    "tau-negative": (["clreg.tau=-0.5"], None, ["clreg.tau", "greater than 0"]),
    "lambda-negative": (["clreg.lambda=-1"], None, ["clreg.lambda", "greater than or equal to 0", "(got -1)"]),
    "zero-stage-4": (["train.zero_stage=4"], None, ["train.zero_stage", "less than or equal to 3", "(got 4)"]),
    "bad-form": (["clreg.form=triplet"], None, ["clreg.form", "'dpo'", "'infonce'"]),
    "bad-benchmark": (["data.benchmark=tofu2"], None, ["data.benchmark", "'synthetic-tofu'", "'tofu'", "'muse'"]),
    "unknown-nested-key": (["clreg.temperature=0.3"], None, ["clreg.temperature", "unknown key"]),
    "forget-split-missing": ([], _only_forget05, ["no forget split 'forget10'", "forget splits present there: forget05",
                                                  "forget01, forget05, forget10", "data.forget_split"]),
    "retain-split-wrong": (["data.retain_split=retain95"], None, ["no retain split 'retain95'", "retain90",
                                                                  "data.retain_split"]),
    "malformed-json": ([], _malformed_forget, ["forget10.json", "not valid JSON", "line 1"]),
    "row-missing-answer": ([], _retain_without_answer, ["retain90.json", "row 0", "'answer'", "missing"]),
    "empty-perturbed-answer": ([], _empty_perturbed, ["forget10_perturbed.json", "row 1", "'perturbed_answer'",
                                                      "empty list"]),
    "forget-retain-overlap": ([], _overlap, ["also in retain split 'retain90'", "forget question 2?"]),
    "paraphrase-positives-without-paraphrases": (["clreg.positives=paraphrase"], _no_paraphrases,
                                                 ["clreg.positives=paraphrase", "paraphrased_answer"]),
    "empty-forget-set": ([], _empty_forget, ["forget10.json", "empty"]),
    "retain-set-missing": ([], _retain_missing, ["retain", "data.retain_split"]),
    "more-gpus-than-the-machine": (["train.gpus_per_worker=64"], None,
                                   ["train.gpus_per_worker=64", "does not fit on this machine", "GPUs in all"]),
    "more-workers-than-cpus": (["train.num_workers=64"], None,
                               ["train.num_workers=64", "does not fit on this machine", "CPUs in all"]),
    "model-path-missing": (["model.name_or_path=./nope/model", "prepare.enabled=false"], None,
                           ["model.name_or_path './nope/model' does not exist", "tiny-llama"]),
}


@pytest.mark.parametrize(("sets", "breaker", "fragments"), list(CASES.values()), ids=list(CASES))
def test_bad_input_exits_2_before_ray(env, capsys, sets, breaker, fragments) -> None:
    if breaker is not None:
        breaker(env["data"])
    argv = ["run", str(env["config"])]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "error:" in err
    for fragment in fragments:
        assert _words(fragment) in err, f"{fragment!r} not in stderr: {err}"
    _nothing_started(env["root"])


@pytest.mark.parametrize(("sets", "breaker", "fragments"), list(CASES.values()), ids=list(CASES))
def test_validate_refuses_the_same_bad_input_in_a_sweep_file(env, capsys, sets, breaker, fragments) -> None:
    """`clreg-sweep validate SWEEP_FILE` makes the same checks (the trial config is the sweep's `base`)."""
    if breaker is not None:
        breaker(env["data"])
    sweep = env["root"] / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "bad", "base": env["dict"], "storage": {"dir": str(env["root"] / "sw")},
                                     "mlflow": {"tracking_uri": f"sqlite:///{env['root'] / 'mlflow.db'}"}}))
    argv = ["validate", str(sweep)]
    for s in sets:
        argv += ["--set", f"base.{s}"]
    assert cli.main(argv) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    for fragment in fragments:
        assert _words(fragment) in err, f"{fragment!r} not in stderr: {err}"
    _nothing_started(env["root"])
    assert not (env["root"] / "sw").exists() and not (env["root"] / "mlflow.db").exists()


def test_unknown_top_level_key(env, capsys) -> None:
    env["config"].write_text(yaml.safe_dump({**env["dict"], "trian": {"epochs": 1}}))
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert f"{env['config']}: trian: unknown key (typo?)" in err
    _nothing_started(env["root"])


def test_unknown_nested_key_in_file(env, capsys) -> None:
    env["config"].write_text(yaml.safe_dump({**env["dict"], "train": {"epochs": 1, "micro_batch": 2}}))
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "train.micro_batch: unknown key (typo?)" in err
    _nothing_started(env["root"])


def test_invalid_yaml(env, capsys) -> None:
    env["config"].write_text("data:\n  benchmark: tofu\n  path: [unclosed\nclreg: {tau: 0.5\n")
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "not valid YAML" in err and "trial.yaml" in err
    _nothing_started(env["root"])


def test_yaml_that_is_not_a_mapping(env, capsys) -> None:
    env["config"].write_text("- data\n- model\n")
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    assert "must be a mapping" in _words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_missing_config_file(env, capsys) -> None:
    missing = env["root"] / "nope.yaml"
    assert cli.main(["run", str(missing)]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "nope.yaml: no such config file" in err
    _nothing_started(env["root"])


@pytest.mark.parametrize("item", ["clreg.tau", "=0.3"])
def test_set_without_key_value(env, capsys, item) -> None:
    assert cli.main(["run", str(env["config"]), "--set", item]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert f"--set {item!r}: expected key=value" in err
    _nothing_started(env["root"])


def test_set_into_a_scalar(env, capsys) -> None:
    assert cli.main(["run", str(env["config"]), "--set", "output_dir.x=1"]) == cli.EXIT_INVALID
    assert "'output_dir' is not a section" in _words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_existing_run_directory(env, capsys) -> None:
    (env["root"] / "runs" / "taken").mkdir(parents=True)
    assert cli.main(["run", str(env["config"]), "--name", "taken"]) == cli.EXIT_INVALID
    assert "exists; choose another --name" in _words(capsys.readouterr().err)
    assert not ray.is_initialized()
    assert not (env["root"] / "cache" / "prepared").exists()


def test_valid_config_reaches_ray(env) -> None:
    """The harness is not vacuous: the same valid config passes validation and gets as far as `ray.init`."""
    with pytest.raises(RayStarted):
        cli.main(["run", str(env["config"]), "--set", "clreg.layer=last-8", "--set", "method.name=pdu",
                  "--set", "method.eps=0.5"])
    assert not (env["root"] / "runs").exists()


def test_preflight_accepts_a_valid_config(env) -> None:
    cfg = load_config(TrialConfig, env["config"], ["clreg.layer=0", "clreg.positives=paraphrase"])
    bench = preflight(cfg)
    assert bench.name == "tofu"
    assert (len(bench.forget), len(bench.retain), len(bench.holdout)) == (4, 6, 3)
    assert all(e.paraphrased_answer and len(e.perturbed_answer) == 3 for e in bench.forget)
    _nothing_started(env["root"])


def test_model_path_missing_without_clreg(env, capsys) -> None:
    argv = ["run", str(env["config"]), "--set", "clreg.enabled=false", "--set", "prepare.enabled=false",
            "--set", "model.name_or_path=./nope/model"]
    assert cli.main(argv) == cli.EXIT_INVALID
    assert "does not exist" in _words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_error_message_with_brackets_is_printed_verbatim(env, capsys) -> None:
    assert cli.main(["run", str(env["config"]), "--set", "clreg[/x]"]) == cli.EXIT_INVALID
    assert "--set 'clreg[/x]': expected key=value" in _words(capsys.readouterr().err)
    _nothing_started(env["root"])
