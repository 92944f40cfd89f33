"""`evaluate` end to end on the tiny Llama: every metric present, MISSING (with its reason) where data or oracle is
absent, the metric definitions recorded, and the per-benchmark generation lengths."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from trainables.config import EvalConfig
from trainables.data.schema import Benchmark, Example
from trainables.evaluation import load_eval
from trainables.metrics import (
    METRICS,
    OracleReference,
    evaluate,
    mia,
    mia_suite,
    oracle_reference,
    privleak,
    save_eval,
    scoring,
    tofu,
)
from trainables.metrics.evaluate import default_metrics
from trainables.metrics.muse_suite import KNOWMEM_STOP_STRINGS
from trainables.metrics.registry import NO_ORACLE, EvalContext
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
EXACT = CFG.model_copy(update={"definitions": "exact"})


def run(model, tokenizer, benchmark, oracle=None, cfg=CFG, metrics=None):
    return evaluate(model, tokenizer, benchmark, cfg, target_layer=1, max_length=64, oracle=oracle, metrics=metrics)


@pytest.fixture(scope="module")
def oracle_result(model, tokenizer, tofu_benchmark):
    return run(model, tokenizer, tofu_benchmark)


@pytest.fixture(scope="module")
def muse_benchmark() -> Benchmark:
    text = [Example(question="", answer=f"The river flows north, chapter {i}.", raw=True) for i in range(3)]
    qa = [Example(question=f"Where does river {i} flow?", answer="North.") for i in range(2)]
    return Benchmark(name="tiny-muse", family="muse", forget=text, retain=text[::-1], holdout=text[:2],
                     eval_sets={"verbmem_forget": [Example("The river flows", " north.", raw=True)],
                                "knowmem_forget": qa, "knowmem_retain": qa})


def test_registry_holds_every_named_metric():
    assert TOFU_METRICS | MUSE_METRICS <= set(METRICS.names())
    assert set(default_metrics("tofu")) == TOFU_METRICS
    assert MUSE_METRICS <= set(default_metrics("muse"))


def test_every_tofu_metric_without_oracle(oracle_result):
    agg = oracle_result.aggregates
    assert set(agg) == TOFU_METRICS
    for name in NEEDS_ORACLE | {"entanglement_profile"}:
        assert agg[name] is None, name
    assert oracle_result.missing == {"forget_quality": NO_ORACLE, "privleak": NO_ORACLE}
    assert oracle_result.definitions == "open-unlearning"
    assert oracle_result.definitions_version == "open-unlearning@d3d7cf9"
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


def test_privleak_at_oracle_auc_1(model, tokenizer, tofu_benchmark, oracle_result):
    """open-unlearning's `+ 1e-10` keeps PrivLeak finite at AUC_ref = 1; exact reports it missing, saying why."""
    auc = oracle_result.aggregates["mia_min_k"]
    undefined = OracleReference(forget_truth_ratios=[1.0], mia_min_k_auc=1.0)
    ou = run(model, tokenizer, tofu_benchmark, oracle=undefined, metrics=["privleak"])
    assert ou.aggregates["privleak"] == pytest.approx((1 - auc) / 1e-10 * 100) and ou.missing == {}
    exact = run(model, tokenizer, tofu_benchmark, oracle=undefined, cfg=EXACT, metrics=["privleak"])
    assert exact.aggregates["privleak"] is None
    assert exact.missing == {"privleak": "oracle min-k AUC is 1: PrivLeak undefined under eval.definitions=exact"}


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


def test_every_missing_metric_says_why(model, tokenizer, tofu_benchmark):
    bare = dataclasses.replace(tofu_benchmark, holdout=[], eval_sets={}, source="/data/tofu")
    result = run(model, tokenizer, bare, cfg=EvalConfig(batch_size=4, max_new_tokens=4, layer_profile=False))
    reasons = result.missing
    assert {k for k, v in result.aggregates.items() if v is None} == set(reasons) - {"model_utility_partial"}
    mia_reason = "no holdout split in /data/tofu: MIA needs non-members"
    for name in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus"):
        assert reasons[name] == mia_reason, name
    assert reasons["privleak"] == f"mia_min_k is missing: {mia_reason}"
    assert reasons["forget_quality"] == NO_ORACLE
    assert reasons["retain_truth_ratio"] == "no retain_perturbed set in /data/tofu"
    for prefix, split in (("ra", "real_authors"), ("wf", "world_facts")):
        for kind in ("prob", "rouge", "truth_ratio"):
            assert reasons[f"{prefix}_{kind}"] == f"no {split} set in /data/tofu"
    assert reasons["entanglement_profile"] == "eval.layer_profile is false"
    assert reasons["probe_recoverability"] == ("needs at least 2 items in each of forget and holdout in /data/tofu; "
                                               "has forget 3, holdout 0")
    assert result.aggregates["model_utility"] == pytest.approx(
        tofu.model_utility({k: result.aggregates[k] for k in ("retain_prob", "retain_rouge")}))
    assert reasons["model_utility_partial"] == (
        "computed from 2 of 9 parts; missing: retain_truth_ratio (no retain_perturbed set in /data/tofu); "
        "ra_prob (no real_authors set in /data/tofu); ra_rouge (no real_authors set in /data/tofu); "
        "ra_truth_ratio (no real_authors set in /data/tofu); wf_prob (no world_facts set in /data/tofu); "
        "wf_rouge (no world_facts set in /data/tofu); wf_truth_ratio (no world_facts set in /data/tofu)")


def test_real_authors_and_world_facts_score_answer_not_the_paraphrase(model, tokenizer, tofu_benchmark):
    """open-unlearning's `answer_key: answer`: a paraphrase on these rows (the synthetic ones have one) is ignored."""
    sets = {name: [dataclasses.replace(ex, paraphrased_answer=f"Perhaps {ex.answer}") for ex in rows]
            for name, rows in tofu_benchmark.eval_sets.items()}
    bench = dataclasses.replace(tofu_benchmark, eval_sets=sets)
    names = ["ra_truth_ratio", "ra_prob", "wf_truth_ratio", "wf_prob"]
    for cfg in (CFG, EXACT):
        got = run(model, tokenizer, bench, cfg=cfg, metrics=names)
        for prefix, split in (("ra", "real_authors"), ("wf", "world_facts")):
            rows = sets[split]
            answer = scoring.score_answers(model, tokenizer, rows, 64, 4).avg_nll
            para = scoring.score_alternatives(model, tokenizer, rows, "paraphrased", 64, 4)
            wrong = scoring.score_alternatives(model, tokenizer, rows, "perturbed", 64, 4)
            expected = tofu.truth_ratio(answer, wrong, definitions=cfg.definitions)
            np.testing.assert_allclose(got.per_item[f"{prefix}_truth_ratio"], expected, rtol=1e-6)
            assert not np.allclose(expected, tofu.truth_ratio(para, wrong, definitions=cfg.definitions))
            np.testing.assert_allclose(got.per_item[f"{prefix}_prob"],
                                       tofu.normalised_probability(answer, wrong, definitions=cfg.definitions))


def test_an_eos_only_forget_answer(model, tokenizer, tofu_benchmark):
    """open-unlearning drops its only token: EM None (left out of the mean), ES 0, min-k 0; exact keeps the EOS."""
    forget = tofu_benchmark.forget + [Example(question="The river flows", answer="", raw=True)]
    bench = dataclasses.replace(tofu_benchmark, forget=forget)
    names = ["exact_memorization", "extraction_strength"]
    ou = run(model, tokenizer, bench, metrics=names)
    em = ou.per_item["exact_memorization"]
    assert em[3] is None and ou.aggregates["exact_memorization"] == pytest.approx(np.mean(em[:3]))
    assert ou.per_item["extraction_strength"][3] == 0.0
    ctx = EvalContext(model, tokenizer, bench, CFG, target_layer=1, max_length=64)
    assert mia_suite._min_k(ctx, "forget")[3] == 0.0
    assert mia_suite._min_k_plus_plus(ctx, "forget")[3] == 0.0
    exact = run(model, tokenizer, bench, cfg=EXACT, metrics=names)
    assert exact.per_item["exact_memorization"][3] in (0.0, 1.0)  # one token, its EOS, predicted or not
    assert exact.aggregates["exact_memorization"] == pytest.approx(np.mean(exact.per_item["exact_memorization"]))


def test_zlib_compresses_the_decoded_label_text_or_the_answer(model, tokenizer, tofu_benchmark):
    for cfg, texts in ((CFG, [" " + ex.answer for ex in tofu_benchmark.forget]),  # the plain template's space
                       (EXACT, [ex.answer for ex in tofu_benchmark.forget])):
        ctx = EvalContext(model, tokenizer, tofu_benchmark, cfg, target_layer=1, max_length=64)
        nll = ctx.answer_scores("forget").avg_nll
        assert mia_suite._zlib(ctx, "forget") == pytest.approx([mia.zlib_score(x, t) for x, t in zip(nll, texts)])


def test_generation_length_per_benchmark(model, tokenizer, tofu_benchmark, muse_benchmark):
    """eval.max_new_tokens None: open-unlearning's TOFU 200, MUSE verbmem 128, knowmem 32 with its stop strings;
    an int overrides the length of every set (the stop strings stay)."""
    cases = [(tofu_benchmark, ["wf_rouge"]), (muse_benchmark, ["verbmem_rougeL_f1", "knowmem_forget_rougeL_f1"])]
    expected = {None: {("world_facts", 200, ()), ("verbmem_forget", 128, ()),
                       ("knowmem_forget", 32, KNOWMEM_STOP_STRINGS)},
                5: {("world_facts", 5, ()), ("verbmem_forget", 5, ()), ("knowmem_forget", 5, KNOWMEM_STOP_STRINGS)}}
    for length, keys in expected.items():
        cfg = EvalConfig(batch_size=4, max_new_tokens=length, layer_profile=False)
        seen = set()
        for bench, names in cases:
            ctx = EvalContext(model, tokenizer, bench, cfg, target_layer=1, max_length=64)
            for name in names:
                assert isinstance(ctx.metric(name).value, float), name
            seen |= {key[1:] for key in ctx.memo if key[0] == "generations"}
        assert seen == keys
    assert EvalConfig().max_new_tokens is None


def test_muse_family(model, tokenizer, muse_benchmark):
    result = run(model, tokenizer, muse_benchmark, oracle=OracleReference([], 0.5))
    assert MUSE_METRICS <= set(result.aggregates)
    for name in MUSE_METRICS:
        assert isinstance(result.aggregates[name], float), name


def test_unknown_metric_fails_before_any_forward(tokenizer, tofu_benchmark):
    with pytest.raises(UnknownNameError, match="forget_quality"):
        run(None, tokenizer, tofu_benchmark, metrics=["forget_qualty"])


def test_save_eval_and_oracle_json_round_trip(tmp_path, oracle_result):
    save_eval(oracle_result, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "eval_aggregates.json").read_text())
    assert saved == {**oracle_result.aggregates, "eval_definitions": "open-unlearning",
                     "eval_definitions_version": "open-unlearning@d3d7cf9",
                     "missing_reasons": {"forget_quality": NO_ORACLE, "privleak": NO_ORACLE}}
    loaded = load_eval(tmp_path / "eval")
    assert (loaded.aggregates, loaded.definitions, loaded.definitions_version, loaded.missing) == (
        oracle_result.aggregates, "open-unlearning", "open-unlearning@d3d7cf9", oracle_result.missing)
    per_item = json.loads((tmp_path / "eval" / "eval_per_item.json").read_text())
    assert per_item["forget_prob"] == pytest.approx(oracle_result.per_item["forget_prob"])
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["eval_aggregates.json", "eval_per_item.json"]
    reference = oracle_reference(oracle_result)
    assert OracleReference.from_json(reference.to_json()) == reference


def test_cli_prints_each_missing_metric_with_its_reason(capsys):
    from orchestrator.cli import _print_metrics

    _print_metrics({"forget_prob": 0.5, "privleak": None, "model_utility": 0.25, "eval_definitions": "exact",
                    "missing_reasons": {"privleak": "no oracle", "model_utility_partial": "8 of 9 parts"}})
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert "missing" in rows["privleak"] and "no oracle" in rows["privleak"]
    assert "0.25" in rows["model_utility"] and "8 of 9 parts" in rows["model_utility"]
    assert "eval_definitions" not in rows


def test_exact_definitions_are_recorded(tmp_path, model, tokenizer, tofu_benchmark):
    result = run(model, tokenizer, tofu_benchmark, cfg=EXACT, metrics=["forget_truth_ratio"])
    assert (result.definitions, result.definitions_version) == ("exact", "exact@1")
    save_eval(result, tmp_path)
    saved = json.loads((tmp_path / "eval_aggregates.json").read_text())
    assert (saved["eval_definitions"], saved["eval_definitions_version"]) == ("exact", "exact@1")
    assert load_eval(tmp_path).definitions == "exact"
