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
from tests.refusals.harness import FORGET, HOLDOUT, RETAIN, RayStarted, perturbed_rows, tofu_dir, words, write_json
from trainables.config import TrialConfig

# --- ways to break the data, one per case --------------------------------------------------------------------------

def _only_forget05(d: Path) -> None:
    (d / "forget10.json").unlink()
    (d / "forget10_perturbed.json").unlink()
    write_json(d / "forget05.json", FORGET[:2])


def _malformed_forget(d: Path) -> None:
    (d / "forget10.json").write_text("{not json", encoding="utf-8")


def _retain_without_answer(d: Path) -> None:
    write_json(d / "retain90.json", [{"question": r["question"]} for r in RETAIN])


def _empty_perturbed(d: Path) -> None:
    rows = perturbed_rows(FORGET)
    rows[1]["perturbed_answer"] = []
    write_json(d / "forget10_perturbed.json", rows)


def _overlap(d: Path) -> None:
    write_json(d / "retain90.json", RETAIN + [FORGET[2]])


def _empty_forget(d: Path) -> None:
    write_json(d / "forget10.json", [])
    write_json(d / "forget10_perturbed.json", [])


def _retain_missing(d: Path) -> None:
    (d / "retain90.json").unlink()


def _no_paraphrases(d: Path) -> None:
    rows = perturbed_rows(FORGET)
    for r in rows:
        del r["paraphrased_answer"]
        del r["perturbed_answer"]
    write_json(d / "forget10_perturbed.json", rows)


# --- harness ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A valid config file in `tmp_path` (TOFU layout data, tiny-llama with 8 layers) and a guarded `ray.init`."""
    data = tofu_dir(tmp_path / "data")
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


Case = tuple[list[str], Callable[[Path], None] | None, list[str]]

# (extra --set overrides, data breaker, fragments the error must contain)
CASES: dict[str, Case] = {
    "layer-last-9-of-8": (["clreg.layer=last-9"], None, ["clreg.layer 'last-9'", "last-1..last-8", "0..7"]),
    "layer-absolute-8-of-8": (["clreg.layer=8"], None, ["clreg.layer 8", "last-1..last-8", "0..7"]),
    "layer-negative": (["clreg.layer=-1"], None, ["clreg.layer", ">= 0"]),
    "layer-syntax": (["clreg.layer=top-1"], None, ["clreg.layer", "'last-k'"]),
    "unknown-method": (["method.name=foo"], None,
                       ["unknown method 'foo'", "ceu", "dpo", "gradascent", "graddiff", "npo", "pdu", "rmu",
                        "satimp", "simnpo", "undial", "wga"]),
    "foreign-param": (["method.name=graddiff", "method.beta=0.5"], None,
                      ["method.beta is not a parameter of graddiff", "alpha, gamma"]),
    "pdu-without-eps": (["method.name=pdu"], None, ["method.eps is required by pdu"]),
    "rmu-layer-9-of-8": (["method.name=rmu", "method.layer=9"], None, ["method.layer 9", "last-1..last-8", "0..7"]),
    "rmu-pattern-matching-nothing": (["method.name=rmu", "method.trainable=lm_head"], None,
                                     ["method.trainable 'lm_head' matches none", "model.layers.0"]),
    "rmu-pattern-invalid": (["method.name=rmu", "method.trainable=model.("], None,
                            ["method.trainable", "not a regular expression"]),
    "embed-diff-without-a-layer": (["method.retain_loss=embed_diff"], None,
                                   ["method.retain_loss embed_diff", "simnpo has not", "nll, kl"]),
    "dpo-idk-file-missing": (["method.name=dpo", "data.idk_file=/nonexistent/idk.txt"], None,
                             ["data.idk_file /nonexistent/idk.txt: cannot be read"]),
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
    err = words(capsys.readouterr().err)
    assert "error:" in err
    for fragment in fragments:
        assert words(fragment) in err, f"{fragment!r} not in stderr: {err}"
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
    err = words(capsys.readouterr().err)
    for fragment in fragments:
        assert words(fragment) in err, f"{fragment!r} not in stderr: {err}"
    _nothing_started(env["root"])
    assert not (env["root"] / "sw").exists() and not (env["root"] / "mlflow.db").exists()


def test_unknown_top_level_key(env, capsys) -> None:
    env["config"].write_text(yaml.safe_dump({**env["dict"], "trian": {"epochs": 1}}))
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert f"{env['config']}: trian: unknown key (typo?)" in err
    _nothing_started(env["root"])


def test_unknown_nested_key_in_file(env, capsys) -> None:
    env["config"].write_text(yaml.safe_dump({**env["dict"], "train": {"epochs": 1, "micro_batch": 2}}))
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert "train.micro_batch: unknown key (typo?)" in err
    _nothing_started(env["root"])


def test_invalid_yaml(env, capsys) -> None:
    env["config"].write_text("data:\n  benchmark: tofu\n  path: [unclosed\nclreg: {tau: 0.5\n")
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert "not valid YAML" in err and "trial.yaml" in err
    _nothing_started(env["root"])


def test_yaml_that_is_not_a_mapping(env, capsys) -> None:
    env["config"].write_text("- data\n- model\n")
    assert cli.main(["run", str(env["config"])]) == cli.EXIT_INVALID
    assert "expected a mapping of sections" in words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_missing_config_file(env, capsys) -> None:
    missing = env["root"] / "nope.yaml"
    assert cli.main(["run", str(missing)]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert "nope.yaml: no such config file" in err
    _nothing_started(env["root"])


@pytest.mark.parametrize("item", ["clreg.tau", "=0.3"])
def test_set_without_key_value(env, capsys, item) -> None:
    assert cli.main(["run", str(env["config"]), "--set", item]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert f"--set {item!r}: expected key=value" in err
    _nothing_started(env["root"])


def test_set_into_a_scalar(env, capsys) -> None:
    assert cli.main(["run", str(env["config"]), "--set", "output_dir.x=1"]) == cli.EXIT_INVALID
    assert "'output_dir' is not a section" in words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_existing_run_directory(env, capsys) -> None:
    (env["root"] / "runs" / "taken").mkdir(parents=True)
    assert cli.main(["run", str(env["config"]), "--name", "taken"]) == cli.EXIT_INVALID
    assert "exists; choose another --name" in words(capsys.readouterr().err)
    assert not ray.is_initialized()
    assert not (env["root"] / "cache" / "prepared").exists()


def test_valid_config_reaches_ray(env) -> None:
    """The harness is not vacuous: the same valid config passes validation and gets as far as `ray.init`
    (`--debug` lets that error through instead of reporting it as an internal failure)."""
    with pytest.raises(RayStarted):
        cli.main(["--debug", "run", str(env["config"]), "--set", "clreg.layer=last-8", "--set", "method.name=pdu",
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
    assert "does not exist" in words(capsys.readouterr().err)
    _nothing_started(env["root"])


def test_error_message_with_brackets_is_printed_verbatim(env, capsys) -> None:
    assert cli.main(["run", str(env["config"]), "--set", "clreg[/x]"]) == cli.EXIT_INVALID
    assert "--set 'clreg[/x]': expected key=value" in words(capsys.readouterr().err)
    _nothing_started(env["root"])


# --- prepare.oracle_logs / eval --format open-unlearning: released open-unlearning logs, both ways -----------------

def _ou_log(n: int = len(FORGET)) -> dict:
    """A retain model's TOFU_EVAL.json in open-unlearning's layout, one forget truth ratio per forget row."""
    return {"forget_truth_ratio": {"agg_value": 0.6,
                                   "value_by_index": {str(i): {"score": 0.5 + 0.25 * i} for i in range(n)}},
            "mia_min_k": {"agg_value": 0.4, "auc": 0.4, "forget": {"agg_value": 2.0, "value_by_index": {}},
                          "holdout": {"agg_value": 1.5, "value_by_index": {}}},
            "forget_quality": {"agg_value": None}, "model_utility": {"agg_value": 0.5}}


def _scores(log: dict, by_index) -> dict:
    log["forget_truth_ratio"]["value_by_index"] = by_index
    return log


def _as_directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


# (how to break the log file, fragments the error must contain besides "prepare.oracle_logs" and the file)
LOG_CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "no-such-file": (lambda p: p.unlink(), ["no such file"]),
    "not-a-file": (_as_directory, ["is not a file"]),
    "not-json": (lambda p: p.write_text('{"forget_truth_ratio": {'), ["not valid JSON"]),
    "not-an-object": (lambda p: write_json(p, [0.5, 0.75]), ["expected a JSON object", "got a JSON list"]),
    "no-reference-key": (lambda p: write_json(p, {"model_utility": {"agg_value": 0.5}}),
                         ["neither forget_truth_ratio", "nor mia_min_k", "keys: model_utility"]),
    "value-by-index-a-list": (lambda p: write_json(p, _scores(_ou_log(), [0.5, 0.75, 1.0, 1.25])),
                              ["forget_truth_ratio.value_by_index", "object of index -> {\"score\": number}"]),
    "item-without-score": (lambda p: write_json(p, _scores(_ou_log(), {str(i): {"prob": 0.5} for i in range(4)})),
                           ['forget_truth_ratio.value_by_index["0"]', '{"score": number}']),
    "score-not-a-number": (lambda p: write_json(p, _scores(_ou_log(), {str(i): {"score": "1"} for i in range(4)})),
                           ['forget_truth_ratio.value_by_index["0"]', '{"score": number}']),
    "indices-from-1": (lambda p: write_json(p, _scores(_ou_log(), {str(i): {"score": 1.0} for i in range(1, 5)})),
                       ["forget_truth_ratio.value_by_index", 'exactly "0".."3"', "unexpected: '4'"]),
    "one-item-too-many": (lambda p: write_json(p, _ou_log(5)),
                          ["forget_truth_ratio.value_by_index: 5 truth ratios", "4 items with perturbed answers",
                           "data.forget_split"]),
    "agg-value-a-string": (lambda p: write_json(p, {**_ou_log(), "model_utility": {"agg_value": "0.5"}}),
                           ["model_utility.agg_value", "a number or null", "'0.5'"]),
    "auc-not-in-0-1": (lambda p: write_json(p, {**_ou_log(), "mia_min_k": {"agg_value": 40.0}}),
                       ["mia_min_k.agg_value", "in [0, 1]", "40.0"]),
}


def _log_file(env: dict, breaker: Callable[[Path], None] | None = None) -> Path:
    path = env["root"] / "logs" / "TOFU_EVAL.json"
    path.parent.mkdir(exist_ok=True)
    write_json(path, _ou_log())
    if breaker is not None:
        breaker(path)
    return path


def _no_oracle_log_cached(root: Path) -> None:
    _nothing_started(root)
    assert not (root / "cache" / "oracle-logs").exists(), "an oracle-logs cache entry was created"


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(("breaker", "fragments"), list(LOG_CASES.values()), ids=list(LOG_CASES))
def test_a_bad_oracle_log_exits_2_before_anything_starts(env, capsys, command, breaker, fragments) -> None:
    path = _log_file(env, breaker)
    if command == "run":
        argv = ["run", str(env["config"]), "--set", f"prepare.oracle_logs={path}"]
    else:
        sweep = env["root"] / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"name": "logs", "base": env["dict"],
                                         "storage": {"dir": str(env["root"] / "sw")},
                                         "mlflow": {"tracking_uri": f"sqlite:///{env['root'] / 'mlflow.db'}"}}))
        argv = ["validate", str(sweep), "--set", f"base.prepare.oracle_logs={path}"]
    assert cli.main(argv) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert f"error: prepare.oracle_logs: {path}" in err, err
    for fragment in fragments:
        assert words(fragment) in err, f"{fragment!r} not in stderr: {err}"
    _no_oracle_log_cached(env["root"])
    assert not (env["root"] / "sw").exists() and not (env["root"] / "mlflow.db").exists()


@pytest.fixture
def saved_model(env) -> Path:
    """A tiny Llama saved like a released model (safetensors + tokenizer), so `prepare.enabled: false` has one."""
    from trainables.config import TinyModelConfig
    from trainables.model.tiny import build_tiny_llama

    rows = perturbed_rows(FORGET) + RETAIN + HOLDOUT
    texts = [t for r in rows for t in (r["question"], r["answer"], r.get("paraphrased_answer", ""),
                                       *r.get("perturbed_answer", []))]
    shape = TinyModelConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=300)
    return build_tiny_llama(shape, texts, env["root"] / "released-model", max_positions=128)


def _released(model: Path, *extra: str) -> list[str]:
    """--set overrides: the saved model as the target, no oracle trained, short generations."""
    return [s for kv in ("prepare.enabled=false", f"model.name_or_path={model}", "eval.max_new_tokens=4",
                         "eval.layer_profile=false", "data.max_length=48", *extra) for s in ("--set", kv)]


def test_an_oracle_log_is_accepted_as_the_oracle_of_a_released_model(env, saved_model, capsys) -> None:
    """The released-model recipe: prepare.enabled=false + prepare.oracle_logs validates with forget quality as an
    objective, and `prepare` (no Ray) points the trials at the log's reference, cached by the log's content."""
    import hashlib

    from orchestrator.prepare import prepare

    path = _log_file(env)
    sweep = env["root"] / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "released", "base": env["dict"],
                                     "storage": {"dir": str(env["root"] / "sw")},
                                     "mlflow": {"tracking_uri": f"sqlite:///{env['root'] / 'mlflow.db'}"}}))
    sets = [s if s == "--set" else f"base.{s}" for s in _released(saved_model, f"prepare.oracle_logs={path}")]
    assert cli.main(["validate", str(sweep), *sets]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out
    without = [s if s == "--set" else f"base.{s}" for s in _released(saved_model)]
    assert cli.main(["validate", str(sweep), *without]) == cli.EXIT_INVALID
    assert "set prepare.enabled, prepare.oracle_path or prepare.oracle_logs" in words(capsys.readouterr().err)
    _no_oracle_log_cached(env["root"])

    cfg = load_config(TrialConfig, env["config"], [s for s in _released(saved_model,
                                                                        f"prepare.oracle_logs={path}")
                                                   if s != "--set"])
    prepared = prepare(cfg, log=lambda *_: None)
    assert prepared.target_dir == str(saved_model)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert prepared.oracle_reference == str(env["root"] / "cache" / "oracle-logs" / f"{digest}.json")
    assert json.loads(Path(prepared.oracle_reference).read_text()) == {
        "forget_truth_ratios": [0.5, 0.75, 1.0, 1.25], "mia_min_k_auc": 0.4}
    assert not ray.is_initialized() and not (env["root"] / "cache" / "prepared").exists()


def test_a_log_without_truth_ratios_cannot_serve_a_forget_quality_objective(env, saved_model, capsys) -> None:
    path = _log_file(env, lambda p: write_json(p, {"mia_min_k": {"agg_value": 0.4}}))
    sweep = env["root"] / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "released", "base": env["dict"],
                                     "storage": {"dir": str(env["root"] / "sw")},
                                     "mlflow": {"tracking_uri": f"sqlite:///{env['root'] / 'mlflow.db'}"}}))
    sets = [s if s == "--set" else f"base.{s}" for s in _released(saved_model, f"prepare.oracle_logs={path}")]
    assert cli.main(["validate", str(sweep), *sets]) == cli.EXIT_INVALID
    err = words(capsys.readouterr().err)
    assert f"objectives[0].metric forget_quality needs forget_truth_ratio from the oracle, and prepare.oracle_logs " \
           f"{path} has none" in err, err
    _no_oracle_log_cached(env["root"])


def test_eval_format_open_unlearning_needs_out(env, capsys) -> None:
    argv = ["eval", str(env["root"] / "nope"), str(env["config"]), "--format", "open-unlearning"]
    assert cli.main(argv) == cli.EXIT_INVALID
    assert "eval --format open-unlearning needs --out DIR" in words(capsys.readouterr().err)


def test_eval_writes_an_open_unlearning_log_that_serves_as_the_oracle(env, saved_model, capsys) -> None:
    """Both ways on CPU, no Ray: `eval --format open-unlearning` writes TOFU_EVAL.json, which `read_oracle_logs`
    accepts and `--oracle-reference` takes; the model scored against its own log has forget quality exactly 1
    (KS test of a sample against itself) and PrivLeak 0."""
    from trainables.metrics.oracle_logs import read_oracle_logs

    out, again = env["root"] / "eval", env["root"] / "eval-again"
    sets = _released(saved_model)
    assert cli.main(["eval", str(saved_model), str(env["config"]), *sets, "--format", "open-unlearning",
                     "--out", str(out)]) == 0, capsys.readouterr().err
    ours = json.loads((out / "eval_aggregates.json").read_text())
    log = read_oracle_logs(out / "TOFU_EVAL.json", expected_items=len(FORGET))
    assert log.reference.forget_truth_ratios == json.loads((out / "eval_per_item.json").read_text())[
        "forget_truth_ratio"]
    assert log.reference.mia_min_k_auc == ours["mia_min_k"]
    assert log.aggregates == {k: v for k, v in ours.items() if k in log.aggregates}
    assert {"forget_prob", "forget_rouge", "retain_prob", "model_utility", "mia_zlib"} <= set(log.aggregates)

    bad = _log_file(env, lambda p: write_json(p, _ou_log(3)))
    argv = ["eval", str(saved_model), str(env["config"]), *sets, "--oracle-reference", str(bad), "--out", str(again)]
    assert cli.main(argv) == cli.EXIT_INVALID
    assert f"error: --oracle-reference: {bad}: forget_truth_ratio.value_by_index: 3 truth ratios" in words(
        capsys.readouterr().err)
    assert not again.exists()

    argv = ["eval", str(saved_model), str(env["config"]), *sets, "--oracle-reference", str(out / "TOFU_EVAL.json"),
            "--out", str(again)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    scored = json.loads((again / "eval_aggregates.json").read_text())
    assert scored["forget_quality"] == pytest.approx(1.0)
    assert scored["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert not (again / "TOFU_EVAL.json").exists()  # --format clreg (the default) writes only our files
    assert len(list((env["root"] / "cache" / "oracle-logs").iterdir())) == 1  # the log's reference, cached
    assert not ray.is_initialized()
