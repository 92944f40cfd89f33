"""The attack scores on values worked out by hand (formulas in `trainables.attacks.scores`)."""

from __future__ import annotations

import math

import pytest

from trainables.attacks.scores import quantization_stability, recovery, relearn_agreement, robustness


def test_relearn_agreement():
    assert relearn_agreement(0.3, 0.1) == pytest.approx(0.5)  # 1 - 0.2 / 0.4
    assert relearn_agreement(0.2, 0.2) == 1.0
    assert relearn_agreement(0.2, -0.2) == 0.0  # opposite directions
    assert relearn_agreement(0.4, 0.0) == 0.0  # the oracle did not move, the model did
    assert relearn_agreement(0.0, 0.0) == 1.0  # the same, zero, change
    assert relearn_agreement(None, 0.1) is None and relearn_agreement(0.1, math.nan) is None


def test_quantization_stability():
    assert quantization_stability(0.1, 0.3) == pytest.approx(0.5)  # 1 - 0.2 / 0.4
    assert quantization_stability(0.25, 0.25) == 1.0
    assert quantization_stability(0.0, 0.0) == 1.0
    assert quantization_stability(0.0, 0.5) == 0.0
    assert quantization_stability(0.1, None) is None and quantization_stability(math.inf, 0.1) is None


def test_recovery():
    value, reason = recovery(before=0.2, after=0.5, target=0.8, oracle=0.1)
    assert value == pytest.approx(0.3 / 0.7) and reason is None
    assert recovery(0.2, 0.8, 0.8, 0.2) == (pytest.approx(1.0), None)  # all the way back to the target
    assert recovery(0.8, 0.8, 0.8, 0.1) == (0.0, None)  # never unlearned, unchanged: nothing recovered


def test_recovery_refuses_a_gap_below_min_gap_and_missing_inputs():
    value, reason = recovery(0.1, 0.2, target=0.33, oracle=0.30)
    assert value is None and "divide by noise" in reason and "0.03" in reason
    assert recovery(0.1, 0.2, 0.33, 0.30, min_gap=0.01)[0] == pytest.approx(0.1 / 0.03)
    value, reason = recovery(0.1, None, 0.8, math.nan)
    assert value is None and "after, oracle" in reason


def test_robustness_is_the_harmonic_mean_of_the_scores_that_exist():
    assert robustness([0.5, 1.0]) == pytest.approx(2 / 3)  # 2 / (1/0.5 + 1/1)
    assert robustness([0.5, None]) == 0.5
    assert robustness([0.25, 0.5, 1.0]) == pytest.approx(3 / 7)
    assert robustness([0.0, 0.9]) == 0.0
    assert robustness([None, None]) is None and robustness([]) is None
