"""Reference points (target before unlearning, oracle) from saved evaluations, on hand-computed numbers.

The prepared directories are written as `prepare` writes them (`save_eval` per model, `oracle_reference.json`,
`prepare_report.json`); the user-supplied target of `prepare.enabled: false` is a real tiny Llama evaluated once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config_files import load_config
from orchestrator.prepare import ORACLE_REFERENCE_FILE, REPORT_FILE, Prepared, cache_oracle_log
from orchestrator.references import (
    ORACLE_LABEL,
    ORACLE_LOG_LABEL,
    REFERENCE_FILE,
    TARGET_LABEL,
    ReferencePoint,
    References,
    load_references,
    score,
)
from trainables.config import TrialConfig
from trainables.data.schema import Benchmark, Example
from trainables.metrics.evaluate import EvalResult, oracle_reference, save_eval
from trainables.metrics.registry import OracleReference

# Forget truth ratios: the target's all lie above the oracle's, so the two-sample KS statistic is 1 and, with
# 3 items each, the exact two-sided p-value is 2 / C(6, 3) = 0.1 (the two orderings that separate the samples).
TARGET_TR, ORACLE_TR = [4.0, 5.0, 6.0], [1.0, 2.0, 3.0]
# min-k AUCs: target 0.8, oracle 0.6 -> PrivLeak ((1-0.8) - (1-0.6)) / (1-0.6) * 100 = -50.
TARGET_AUC, ORACLE_AUC = 0.8, 0.6


def evaluation(truth_ratios: list[float], auc: float, utility: float) -> EvalResult:
    """An evaluation as `prepare` saves it: oracle metrics MISSING (no oracle yet), the profile non-scalar."""
    return EvalResult({"forget_quality": None, "privleak": None, "mia_min_k": auc, "model_utility": utility,
                       "forget_truth_ratio": 0.5, "entanglement_profile": None},
                      {"forget_truth_ratio": truth_ratios}, missing={"forget_quality": "no oracle reference"})


def prepared_dir(root: Path) -> Prepared:
    """A prepared directory: target and oracle evaluations, the oracle reference, the report."""
    save_eval(evaluation(TARGET_TR, TARGET_AUC, 0.7), root / "target")
    oracle = evaluation(ORACLE_TR, ORACLE_AUC, 0.6)
    save_eval(oracle, root / "oracle")
    (root / ORACLE_REFERENCE_FILE).write_text(oracle_reference(oracle).to_json())
    (root / REPORT_FILE).write_text(json.dumps({"key": root.name}))
    return Prepared(str(root / "target" / "final_model"), str(root / ORACLE_REFERENCE_FILE), {"key": root.name})


def config(tmp_path: Path, *overrides: str) -> TrialConfig:
    return load_config(TrialConfig, None, [f"prepare.cache_dir={tmp_path / 'cache'}", *overrides])


BENCH = Benchmark("synthetic-tofu", "tofu", forget=[Example("q", "a", "p", ("w",))] * 3, retain=[])


def test_score_computes_forget_quality_and_privleak_against_the_oracle() -> None:
    values = score(evaluation(TARGET_TR, TARGET_AUC, 0.7), OracleReference(ORACLE_TR, ORACLE_AUC), "open-unlearning")
    assert values["forget_quality"] == pytest.approx(0.1)
    assert values["privleak"] == pytest.approx(-50.0)
    # Finite numbers only: the non-scalar profile is not a metric of a point.
    assert set(values) == {"forget_quality", "privleak", "mia_min_k", "model_utility", "forget_truth_ratio"}


def test_the_oracle_against_itself_has_forget_quality_1_and_privleak_0() -> None:
    oracle = evaluation(ORACLE_TR, ORACLE_AUC, 0.6)
    values = score(oracle, oracle_reference(oracle), "open-unlearning")
    assert values["forget_quality"] == 1.0 and values["privleak"] == 0.0


def test_score_leaves_oracle_metrics_out_without_their_inputs() -> None:
    target = evaluation(TARGET_TR, TARGET_AUC, 0.7)
    assert {"forget_quality", "privleak"}.isdisjoint(score(target, None, "exact"))
    # An oracle AUC of 1 makes PrivLeak undefined under exact; open-unlearning's epsilon keeps it finite there,
    # (0.2 - 0) / (0 + 1e-10) * 100. An oracle without truth ratios leaves forget quality out.
    values = score(target, OracleReference([], 1.0), "exact")
    assert {"forget_quality", "privleak"}.isdisjoint(values)
    values = score(target, OracleReference([], 1.0), "open-unlearning")
    assert "forget_quality" not in values and values["privleak"] == pytest.approx(0.2 / 1e-10 * 100)
    # A metric the evaluation did not ask for (MUSE has no forget quality) is not added.
    muse = EvalResult({"mia_min_k": TARGET_AUC, "privleak": None}, {"forget_truth_ratio": TARGET_TR})
    assert set(score(muse, OracleReference(ORACLE_TR, ORACLE_AUC), "exact")) == {"mia_min_k", "privleak"}


def test_prepared_references_are_computed_once_and_cached(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "prepared" / "abc123"
    prepared = prepared_dir(root)
    cfg = config(tmp_path)
    refs = load_references(cfg, prepared, BENCH, log=lambda _: None)

    target, oracle = refs.points
    assert (target.name, target.label, oracle.name, oracle.label) == ("target", TARGET_LABEL, "oracle", ORACLE_LABEL)
    assert target.metrics["forget_quality"] == pytest.approx(0.1) and target.metrics["privleak"] == pytest.approx(-50)
    assert target.metrics["model_utility"] == 0.7
    assert oracle.metrics["forget_quality"] == 1.0 and oracle.metrics["privleak"] == 0.0
    assert oracle.metrics["model_utility"] == 0.6
    assert refs.absent == {}

    cached = json.loads((root / REFERENCE_FILE).read_text())
    assert References.from_json(cached) == refs
    # A second call reads the file (a planted value comes back) ...
    cached["points"][0]["metrics"]["model_utility"] = 0.123
    (root / REFERENCE_FILE).write_text(json.dumps(cached))
    assert load_references(cfg, prepared, BENCH).points[0].metrics["model_utility"] == 0.123
    # ... until an input changes: another oracle reference makes the file stale.
    (root / ORACLE_REFERENCE_FILE).write_text(OracleReference(TARGET_TR, TARGET_AUC).to_json())
    again = load_references(cfg, prepared, BENCH)
    assert again.points[0].metrics["model_utility"] == 0.7 and again.points[0].metrics["forget_quality"] == 1.0


def test_released_log_is_the_oracle_point(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "prepared" / "abc123"
    prepared = prepared_dir(root)
    log = tmp_path / "TOFU_EVAL.json"
    log.write_text(json.dumps({
        "forget_truth_ratio": {"agg_value": 0.4, "value_by_index": {str(i): {"score": tr} for i, tr in
                                                                    enumerate([1.5, 2.5, 3.5])}},
        "mia_min_k": {"agg_value": 0.55},
        "model_utility": {"agg_value": 0.62},
        "forget_quality": {"agg_value": None},
    }))
    cfg = config(tmp_path, f"prepare.oracle_logs={log}")
    # As `prepare` hands it over with `prepare.oracle_logs`: the trials' oracle reference is the log's.
    prepared = Prepared(prepared.target_dir, cache_oracle_log(log, cfg.prepare.cache_dir, 3), prepared.report)
    target, oracle = load_references(cfg, prepared, BENCH).points
    assert oracle.label == ORACLE_LOG_LABEL
    assert oracle.metrics == {"forget_truth_ratio": 0.4, "mia_min_k": 0.55, "model_utility": 0.62,
                              "forget_quality": 1.0, "privleak": 0.0}
    # The target against the log: 4, 5, 6 all above 1.5, 2.5, 3.5 -> p = 0.1; PrivLeak (0.2 - 0.45) / 0.45 * 100.
    assert target.metrics["forget_quality"] == pytest.approx(0.1)
    assert target.metrics["privleak"] == pytest.approx((0.2 - 0.45) / 0.45 * 100)


def test_parent_run_round_trip_and_markers() -> None:
    refs = References((ReferencePoint("target", TARGET_LABEL, {"forget_quality": 0.01, "model_utility": 0.9}),
                       ReferencePoint("oracle", ORACLE_LOG_LABEL, {"forget_quality": 1.0})),
                      {})
    assert refs.metrics() == {"reference/target/forget_quality": 0.01, "reference/target/model_utility": 0.9,
                              "reference/oracle/forget_quality": 1.0}
    assert References.from_run({**refs.metrics(), "pareto/hypervolume": 0.3}, {**refs.tags(), "x": "y"}) == refs
    # Only points with every objective can be drawn on the objectives' plane.
    (marker,) = refs.markers(["forget_quality", "model_utility"])
    assert (marker.label, marker.values) == (TARGET_LABEL, (0.01, 0.9))
    assert len(refs.markers(["forget_quality"])) == 2
    absent = References((), {"oracle": "no oracle: ..."})
    assert References.from_run({}, absent.tags()) == absent
    assert References.from_run({}, {}) == References()


def test_at_target_counts_the_values_left_exactly_at_the_targets() -> None:
    refs = References((ReferencePoint("target", TARGET_LABEL, {"forget_quality": 0.0933, "model_utility": 0.56}),
                       ReferencePoint("oracle", ORACLE_LABEL, {"forget_quality": 1.0, "model_utility": 0.57})), {})
    values = {"forget_quality": [0.0933, 0.035, 0.0933 * (1 + 1e-12)], "model_utility": [0.59, 0.6, 0.57]}
    assert refs.at_target(values) == [("forget_quality", 2, 3, 0.0933)]
    # Only the target counts (the oracle's values are the goal, not a sign that nothing was measured).
    assert refs.at_target({"forget_quality": [1.0], "model_utility": [0.57]}) == []
    assert refs.at_target({"privleak": [0.0]}) == []  # no target value to compare with
    assert References((), {"target": "absent"}).at_target(values) == []


def test_user_target_is_evaluated_once_and_the_oracle_read_from_oracle_path(tmp_path: Path) -> None:
    """`prepare.enabled: false`: the given model is evaluated on the driver once, cached by model and settings."""
    from trainables.data.loading import load_benchmark
    from trainables.model.tiny import build_tiny_llama, tokenizer_texts

    overrides = ["data.synthetic.num_authors=3", "data.synthetic.qa_per_author=2", "data.synthetic.forget_percent=50",
                 "data.synthetic.num_world_facts=2", "data.max_length=32", "model.tiny.num_layers=2",
                 "model.tiny.vocab_size=300", "eval.layer_profile=false", "eval.max_new_tokens=4"]
    cfg = config(tmp_path, *overrides)
    bench = load_benchmark(cfg.data, cfg.prepare.cache_dir)
    model = build_tiny_llama(cfg.model.tiny, tokenizer_texts(bench), tmp_path / "released",
                             max_positions=2 * cfg.data.max_length)
    oracle_dir = tmp_path / "oracle-run"
    oracle = evaluation(ORACLE_TR, ORACLE_AUC, 0.6)
    save_eval(oracle, oracle_dir / "oracle")
    (oracle_dir / ORACLE_REFERENCE_FILE).write_text(oracle_reference(oracle).to_json())
    cfg = config(tmp_path, *overrides, "prepare.enabled=false", f"model.name_or_path={model}",
                 f"prepare.oracle_path={oracle_dir}")
    prepared = Prepared(str(model), str(oracle_dir / ORACLE_REFERENCE_FILE), {})

    said: list[str] = []
    refs = load_references(cfg, prepared, bench, log=said.append)
    assert len(said) == 1 and "evaluating the target" in said[0]
    target, oracle_point = refs.points
    assert oracle_point.label == ORACLE_LABEL and oracle_point.metrics["forget_quality"] == 1.0
    evaluated = json.loads(next((tmp_path / "cache" / "references").glob("*/target/eval_aggregates.json")).read_text())
    assert target.metrics["model_utility"] == evaluated["model_utility"]
    assert target.metrics["forget_quality"] == evaluated["forget_quality"]  # scored against oracle_path's reference
    assert 0.0 <= target.metrics["forget_quality"] <= 1.0
    assert load_references(cfg, prepared, bench, log=said.append) == refs and len(said) == 1  # cached

    without = config(tmp_path, *overrides, "prepare.enabled=false", f"model.name_or_path={model}")
    refs = load_references(without, Prepared(str(model), None, {}), bench, log=said.append)
    assert len(said) == 1  # same model and settings: the same cached evaluation
    assert [p.name for p in refs.points] == ["target"] and "forget_quality" not in refs.points[0].metrics
    assert refs.absent == {"oracle": "no oracle: prepare.enabled is false and neither prepare.oracle_path nor "
                                     "prepare.oracle_logs is set"}
