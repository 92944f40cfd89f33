"""`evaluate` end to end on the tiny Llama: every metric present, MISSING where data or oracle is absent."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from trainables.config import EvalConfig
from trainables.data.schema import Benchmark, Example
from trainables.metrics import METRICS, OracleReference, evaluate, oracle_reference, privleak, save_eval
from trainables.metrics.evaluate import default_metrics
from trainables.registry import UnknownNameError

TOFU_METRICS = {
    "forget_prob", "forget_rouge", "forget_truth_ratio", "forget_quality", "retain_prob", "retain_rouge",
    "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio", "wf_prob", "wf_rouge", "wf_truth_ratio",
    "model_utility", "extraction_strength", "exact_memorization", "mia_loss", "mia_zlib", "mia_min_k",
    "mia_min_k_plus_plus", "privleak", "entanglement_variance", "entanglement_mk_mmd", "entanglement_w2",
    "entanglement_profile", "probe_recoverability",
}
MUSE_METRICS = {"verbmem_rougeL_f1", "knowmem_forget_rougeL_f1", "knowmem_retain_rougeL_f1", "privleak"}
NEEDS_ORACLE = {"forget_quality", "privleak"}
CFG = EvalConfig(batch_size=4, max_new_tokens=6, layer_profile=True)


def run(model, tokenizer, benchmark, oracle=None, cfg=CFG, metrics=None):
    return evaluate(model, tokenizer, benchmark, cfg, target_layer=1, max_length=64, oracle=oracle, metrics=metrics)


@pytest.fixture(scope="module")
def oracle_result(model, tokenizer, tofu_benchmark):
    return run(model, tokenizer, tofu_benchmark)


def test_registry_holds_every_named_metric():
    assert TOFU_METRICS | MUSE_METRICS <= set(METRICS.names())
    assert set(default_metrics("tofu")) == TOFU_METRICS
    assert MUSE_METRICS <= set(default_metrics("muse"))


def test_every_tofu_metric_without_oracle(oracle_result):
    agg = oracle_result.aggregates
    assert set(agg) == TOFU_METRICS
    for name in NEEDS_ORACLE | {"entanglement_profile"}:
        assert agg[name] is None, name
    for name in TOFU_METRICS - NEEDS_ORACLE - {"entanglement_profile"}:
        assert isinstance(agg[name], float) and not math.isnan(agg[name]), name
    for name in ("forget_prob", "forget_rouge", "extraction_strength", "exact_memorization", "forget_truth_ratio"):
        assert len(oracle_result.per_item[name]) == 3, name
    profile = oracle_result.per_item["entanglement_profile"]
    assert [p["layer"] for p in profile] == [0, 1]
    assert profile[1]["w2"] == pytest.approx(agg["entanglement_w2"])


def test_model_utility_is_hmean_of_its_components(oracle_result):
    from scipy.stats import hmean

    parts = ["retain_prob", "retain_rouge", "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio",
             "wf_prob", "wf_rouge", "wf_truth_ratio"]
    expected = hmean([oracle_result.aggregates[p] for p in parts])
    assert oracle_result.aggregates["model_utility"] == pytest.approx(expected)


def test_oracle_against_itself_has_forget_quality_1(model, tokenizer, tofu_benchmark, oracle_result):
    reference = oracle_reference(oracle_result)
    assert len(reference.forget_truth_ratios) == 3
    assert reference.mia_min_k_auc == oracle_result.aggregates["mia_min_k"]
    again = run(model, tokenizer, tofu_benchmark, oracle=reference, metrics=["forget_quality"])
    assert again.aggregates == {"forget_quality": 1.0}


def test_privleak_with_oracle(model, tokenizer, tofu_benchmark, oracle_result):
    oracle = OracleReference(forget_truth_ratios=[1.0], mia_min_k_auc=0.5)
    got = run(model, tokenizer, tofu_benchmark, oracle=oracle, metrics=["privleak"]).aggregates["privleak"]
    assert got == pytest.approx(privleak(oracle_result.aggregates["mia_min_k"], 0.5))
    undefined = OracleReference(forget_truth_ratios=[1.0], mia_min_k_auc=1.0)  # privleak divides by 1 - auc_ref
    assert run(model, tokenizer, tofu_benchmark, oracle=undefined, metrics=["privleak"]).aggregates["privleak"] is None


def test_absent_sets_are_missing_not_zero(model, tokenizer, tofu_benchmark):
    bare = dataclasses.replace(tofu_benchmark, holdout=[], eval_sets={})
    oracle = OracleReference(forget_truth_ratios=[0.5, 1.0, 2.0], mia_min_k_auc=0.5)
    agg = run(model, tokenizer, bare, oracle=oracle, cfg=EvalConfig(batch_size=4, max_new_tokens=4,
                                                                    layer_profile=False)).aggregates
    for name in ("retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio", "wf_prob", "wf_rouge",
                 "wf_truth_ratio", "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "privleak",
                 "probe_recoverability", "entanglement_profile"):
        assert agg[name] is None, name
    for name in ("retain_prob", "retain_rouge", "model_utility", "forget_quality", "entanglement_w2"):
        assert isinstance(agg[name], float), name


def test_muse_family(model, tokenizer):
    text = [Example(question="", answer=f"The river flows north, chapter {i}.", raw=True) for i in range(3)]
    qa = [Example(question=f"Where does river {i} flow?", answer="North.") for i in range(2)]
    muse = Benchmark(name="tiny-muse", family="muse", forget=text, retain=text[::-1], holdout=text[:2],
                     eval_sets={"verbmem_forget": [Example("The river flows", " north.", raw=True)],
                                "knowmem_forget": qa, "knowmem_retain": qa})
    result = run(model, tokenizer, muse, oracle=OracleReference([], 0.5))
    assert MUSE_METRICS <= set(result.aggregates)
    for name in MUSE_METRICS:
        assert isinstance(result.aggregates[name], float), name


def test_unknown_metric_fails_before_any_forward(tokenizer, tofu_benchmark):
    with pytest.raises(UnknownNameError, match="forget_quality"):
        run(None, tokenizer, tofu_benchmark, metrics=["forget_qualty"])


def test_save_eval_and_oracle_json_round_trip(tmp_path, oracle_result):
    save_eval(oracle_result, tmp_path / "eval")
    assert json.loads((tmp_path / "eval" / "eval_aggregates.json").read_text()) == oracle_result.aggregates
    per_item = json.loads((tmp_path / "eval" / "eval_per_item.json").read_text())
    assert per_item["forget_prob"] == pytest.approx(oracle_result.per_item["forget_prob"])
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["eval_aggregates.json", "eval_per_item.json"]
    reference = oracle_reference(oracle_result)
    assert OracleReference.from_json(reference.to_json()) == reference
