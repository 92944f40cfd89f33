"""`prepare`'s warnings about prepared models that would make unlearning measure nothing (pure function)."""

from __future__ import annotations

import math

import pytest

from orchestrator.prepare import knowledge_warnings

UTILITY = {"model_utility": 0.4}


@pytest.mark.parametrize(("target", "oracle", "warns"), [
    (0.60, 0.10, False),  # 6x and 0.5 above: clearly known
    (0.16, 0.10, False),  # 1.6x and 0.06 above: just past both bars
    (0.14, 0.10, True),   # 0.04 above and 1.4x
    (0.006, 0.002, True),  # 3x, but 0.004 above: noise on tiny probabilities
    (0.85, 0.80, True),   # 0.05 above, but only 1.06x: the forget answers are predictable from retain data
    (0.08, 0.10, True),   # below the oracle
])
def test_forget_prob_must_be_clearly_above_the_oracles(target: float, oracle: float, warns: bool) -> None:
    out = knowledge_warnings({"forget_prob": target, **UTILITY}, {"forget_prob": oracle})
    assert bool(out) == warns, out
    if warns:
        (message,) = out
        assert message.startswith("the target does not know its forget set: forget quality will not move")
        assert f"target {target:.3g}, oracle {oracle:.3g}" in message


def test_near_zero_utility_warns() -> None:
    (message,) = knowledge_warnings({"forget_prob": 0.9, "model_utility": 0.049}, {"forget_prob": 0.1})
    assert message.startswith("the target's model_utility is 0.049 (< 0.05)")
    assert knowledge_warnings({"forget_prob": 0.9, "model_utility": 0.05}, {"forget_prob": 0.1}) == []


def test_both_warnings_and_missing_metrics() -> None:
    assert len(knowledge_warnings({"forget_prob": 0.1, "model_utility": 0.0}, {"forget_prob": 0.1})) == 2
    assert knowledge_warnings({}, {}) == []  # nothing to judge
    assert knowledge_warnings({"forget_prob": math.nan, "model_utility": math.nan}, {"forget_prob": 0.5}) == []
