"""The attack scores (README "Attacks"): plain functions of metric values, None where a score is undefined.

An unlearned model that erased its knowledge should react to an attack the way the oracle (never trained on the
forget set) does; one that only suppressed it reacts like the target it came from. Each score compares figures
measured on the same forget rows under the same attack.
"""

from __future__ import annotations

import math

NO_GAP = ("the target barely knows half B better than the oracle: recovery would divide by noise "
          "(|target - oracle| = {gap:.3g} < {min_gap})")


def _number(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _agreement(a: float, b: float) -> float:
    """`1 - |a - b| / (|a| + |b|)`, 1.0 when both are 0."""
    total = abs(a) + abs(b)
    return 1.0 if total == 0 else 1.0 - abs(a - b) / total


def relearn_agreement(d_unl: float | None, d_ret: float | None) -> float | None:
    """`R = 1 - |d_unl - d_ret| / (|d_unl| + |d_ret|)`, with `d = m_after - m_before` under relearning.

    d_unl: the unlearned model's change of the attack metric on half B; d_ret: the oracle's (retain-only model)
    under the same attack. R = 1 when the two move alike (what erasure predicts: relearning A teaches B as little
    as it teaches a model that never knew it), 0 when they move in opposite directions or one does not move at all.
    1.0 when both are 0 (the same, zero, change); None when either is missing or non-finite.

    Example: d_unl = 0.3, d_ret = 0.1 -> 1 - 0.2 / 0.4 = 0.5.
    """
    if not (_number(d_unl) and _number(d_ret)):
        return None
    return _agreement(d_unl, d_ret)


def quantization_stability(before: float | None, after: float | None) -> float | None:
    """`Q = 1 - |after - before| / (|before| + |after|)`: how little quantization moves the attack metric.

    1 when quantization leaves it where unlearning put it, towards 0 as it moves away (forget_prob 0.1 -> 0.3:
    1 - 0.2 / 0.4 = 0.5). 1.0 when both are 0; None when either is missing or non-finite.
    """
    if not (_number(before) and _number(after)):
        return None
    return _agreement(before, after)


def recovery(before: float | None, after: float | None, target: float | None, oracle: float | None,
             min_gap: float = 0.05) -> tuple[float | None, str | None]:
    """`(after - before) / (target - oracle)`: the share of what the target knew beyond the oracle on half B that
    relearning on half A brings back.

    before/after: the unlearned model's attack metric on B before and after relearning; target/oracle: the
    target's and the oracle's on B before any attack. 0: nothing came back; 1: back to the target's level. A
    never-unlearned model (before == target) that relearning leaves alone recovers about 0 (nothing lost, nothing
    recovered). Example: before 0.2, after 0.5, target 0.8, oracle 0.1 -> 0.3 / 0.7 = 0.43.

    Returns:
        (value, None), or (None, reason) when an input is missing or non-finite, or when |target - oracle| <
        `min_gap`: then the denominator is noise, and the ratio would be too.
    """
    named = {"before": before, "after": after, "target": target, "oracle": oracle}
    missing = [k for k, v in named.items() if not _number(v)]
    if missing:
        return None, f"recovery needs the {', '.join(missing)} value(s) on half B, which are missing"
    gap = target - oracle
    if abs(gap) < min_gap:
        return None, NO_GAP.format(gap=abs(gap), min_gap=min_gap)
    return (after - before) / gap, None


def robustness(values: list[float | None]) -> float | None:
    """Harmonic mean of the scores that exist (`n / sum_i 1/v_i` over the values that are not None or non-finite).

    The harmonic mean is high only when every score is: a model robust to quantization but not to relearning is
    not robust. None when no value exists; 0.0 when any is <= 0 (its reciprocal is unbounded).
    Example: [0.5, 1.0, None] -> 2 / (2 + 1) = 0.667.
    """
    present = [v for v in values if _number(v)]
    if not present:
        return None
    if any(v <= 0 for v in present):
        return 0.0
    return len(present) / sum(1.0 / v for v in present)
