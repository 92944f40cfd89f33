"""Multi-objective early stopping (`orchestrator.early_stopping`): the dominance rule on numbers, and the scheduler
deciding on reports as Tune hands them over (the real sweep is in test_sweep.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ray.tune.schedulers import TrialScheduler

from orchestrator.early_stopping import DominatedStopping, dominated_by
from trainables.report_keys import TRIAL_COMPLETE

OBJECTIVES = [("forget_quality", "max"), ("model_utility", "max")]
STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


@dataclass
class Trial:
    trial_id: str


@pytest.mark.parametrize("point,others,maximize,margin,expected", [
    ([0.2, 0.2], [[0.3, 0.3]], [True, True], 0.0, True),
    ([0.2, 0.2], [[0.3, 0.1]], [True, True], 0.0, False),  # a trade-off: both on the front
    ([0.2, 0.2], [[0.2, 0.2]], [True, True], 0.0, False),  # identical points do not dominate each other
    ([0.2, 0.2], [[0.2, 0.3]], [True, True], 0.0, True),  # as good on one, better on the other
    ([0.2, 0.2], [[0.25, 0.3]], [True, True], 0.1, False),  # not better by the margin on every objective
    ([0.2, 0.2], [[0.35, 0.3125]], [True, True], 0.1, True),
    ([0.2, 5.0], [[0.3, 3.0]], [True, False], 0.0, True),  # a minimised objective
])
def test_dominance_by_a_margin(point, others, maximize, margin, expected):
    assert dominated_by(point, others, maximize, margin) is expected


def report(epoch: int, fq: float, mu: float, **extra) -> dict:
    return {"epoch": epoch, "forget_quality": fq, "model_utility": mu, **extra}


def test_a_trial_beaten_at_an_epoch_is_stopped_and_a_front_one_never():
    scheduler = DominatedStopping(OBJECTIVES, epochs=3, grace_epochs=1, margin=0.0)
    good, traded, weak = Trial("good"), Trial("traded"), Trial("weak")
    assert scheduler.on_trial_result(None, good, report(1, 0.3, 0.6)) == CONTINUE  # alone at its rung
    assert scheduler.on_trial_result(None, traded, report(1, 0.6, 0.2)) == CONTINUE  # on the rung's front
    assert scheduler.on_trial_result(None, weak, report(1, 0.2, 0.5)) == STOP  # beaten by `good` on both
    # Each epoch is its own rung: a trial compares with what the others reported at the same epoch.
    assert scheduler.on_trial_result(None, good, report(2, 0.1, 0.1)) == CONTINUE
    assert scheduler.on_trial_result(None, traded, report(2, 0.6, 0.3)) == CONTINUE
    assert scheduler.on_trial_result(None, good, report(2, 0.1, 0.1)) == STOP  # its own earlier report is no rival
    assert scheduler.rungs[2] == {"good": [0.1, 0.1], "traded": [0.6, 0.3]}


def test_no_stop_before_the_grace_epochs_at_the_last_epoch_or_without_objectives():
    scheduler = DominatedStopping(OBJECTIVES, epochs=3, grace_epochs=2, margin=0.0)
    best, worst = Trial("best"), Trial("worst")
    for epoch in (1, 2, 3):
        scheduler.on_trial_result(None, best, report(epoch, 0.9, 0.9))
    assert scheduler.on_trial_result(None, worst, report(1, 0.1, 0.1)) == CONTINUE  # within the grace epochs
    assert scheduler.on_trial_result(None, worst, report(3, 0.1, 0.1)) == CONTINUE  # its last epoch: it is done
    assert scheduler.on_trial_result(None, worst, {"epoch": 2, "train/loss": 1.0}) == CONTINUE  # no evaluation
    assert scheduler.on_trial_result(None, worst, report(3, 0.1, 0.1, **{TRIAL_COMPLETE: 1})) == CONTINUE
    assert scheduler.on_trial_result(None, worst, report(2, 0.1, 0.1)) == STOP
