"""The metric registry's metadata: every reported name, which ones need the oracle, their kind and direction."""

from __future__ import annotations

from trainables.config import ATTACK_METRICS, BIT_WIDTHS
from trainables.metrics import METRICS, REPORTED
from trainables.report_keys import (
    ATTACK_SCORES,
    ATTACK_TIMINGS,
    LOSS_TERMS,
    QUANT_Q,
    RELEARN_RECOVERY,
    TIMINGS,
    loss_metric,
    quant_metric,
    relearn_metric,
)

ATTACKED = {
    name
    for metric in ATTACK_METRICS
    for name in (relearn_metric(metric), relearn_metric(metric, before=True),
                 *(quant_metric(bits, metric) for bits in BIT_WIDTHS))
}


def test_every_evaluation_metric_loss_timing_and_attack_score_is_reported():
    losses = {loss_metric(t) for t in LOSS_TERMS}
    timings = set(TIMINGS) | set(ATTACK_TIMINGS)
    assert set(REPORTED.names()) == set(METRICS.names()) | losses | timings | ATTACKED | set(ATTACK_SCORES)
    assert {name for name in REPORTED if REPORTED.get(name).kind == "evaluation"} == set(METRICS.names())
    assert {REPORTED.get(loss_metric(t)).kind for t in LOSS_TERMS} == {"training_loss"}
    assert {REPORTED.get(t).kind for t in timings} == {"timing"}
    assert {REPORTED.get(name).kind for name in ATTACKED | set(ATTACK_SCORES)} == {"attack"}
    assert "train/clreg_loss" in REPORTED and REPORTED.get("train/loss").direction == "min"


def test_oracle_metrics_and_directions():
    # Quantization compares the model with itself; relearning's R and recovery compare with the oracle's.
    oracle_attack_scores = set(ATTACK_SCORES) - {QUANT_Q}
    assert {name for name in REPORTED if REPORTED.get(name).needs_oracle} == {"forget_quality", "privleak"} | (
        oracle_attack_scores
    )
    directions = {name: REPORTED.get(name).direction for name in REPORTED}
    assert directions["forget_quality"] == directions["model_utility"] == "max"
    assert directions["forget_prob"] == directions["verbmem_rougeL_f1"] == "min"
    # An attacked metric keeps its metric's direction; recovery (what came back) is best at 0.
    assert directions[relearn_metric("forget_prob")] == directions[quant_metric(4, "forget_prob")] == "min"
    assert directions[quant_metric(4, "forget_truth_ratio")] == "max"
    assert directions[RELEARN_RECOVERY] == "min" and directions[QUANT_Q] == "max"
    # Best at a reference value, not at an extreme; a profile is not a number.
    assert directions["privleak"] is directions["mia_min_k"] is directions["entanglement_profile"] is None
