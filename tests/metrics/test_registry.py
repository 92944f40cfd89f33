"""The metric registry's metadata: every reported name, which ones need the oracle, their kind and direction."""

from __future__ import annotations

from trainables.metrics import METRICS, REPORTED
from trainables.report_keys import LOSS_TERMS, TIMINGS, loss_metric


def test_every_evaluation_metric_loss_and_timing_is_reported():
    assert set(REPORTED.names()) == set(METRICS.names()) | {loss_metric(t) for t in LOSS_TERMS} | set(TIMINGS)
    assert {name for name in REPORTED if REPORTED.get(name).kind == "evaluation"} == set(METRICS.names())
    assert {REPORTED.get(loss_metric(t)).kind for t in LOSS_TERMS} == {"training_loss"}
    assert {REPORTED.get(t).kind for t in TIMINGS} == {"timing"}
    assert "train/clreg_loss" in REPORTED and REPORTED.get("train/loss").direction == "min"


def test_oracle_metrics_and_directions():
    assert {name for name in REPORTED if REPORTED.get(name).needs_oracle} == {"forget_quality", "privleak"}
    directions = {name: REPORTED.get(name).direction for name in REPORTED}
    assert directions["forget_quality"] == directions["model_utility"] == "max"
    assert directions["forget_prob"] == directions["verbmem_rougeL_f1"] == "min"
    # Best at a reference value, not at an extreme; a profile is not a number.
    assert directions["privleak"] is directions["mia_min_k"] is directions["entanglement_profile"] is None
