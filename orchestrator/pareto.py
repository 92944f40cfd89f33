"""Pareto front and hypervolume of finished trials, as pure functions over numbers.

A sweep reports several objectives per trial (by default forget quality and model utility, both maximised), so
there is no single best trial: the Pareto front is the set worth looking at, and its hypervolume is one number
that says whether a sweep (or a sampler) found a better set of trade-offs than another.

Both functions take plain sequences (one row per trial, one column per objective) and work in numpy on a
"lower is better" matrix, as optuna does in `optuna/study/_multi_objective.py`: maximised columns are negated
once, so the dominance test and optuna's hypervolume code only ever minimise.

Missing values: a trial that lacks an objective (None) or reported NaN is never on the front, never dominates
another trial and adds nothing to the hypervolume; it did not finish, so it says nothing about the trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume

Points = Sequence[Sequence[float | None]]


def pareto_front(points: Points, maximize: Sequence[bool] = (True, True)) -> list[int]:
    """Indices of the non-dominated points, in input order.

    A point is dominated when another point is at least as good on every objective and strictly better on one.
    Tie rule: identical points do not dominate each other (neither is strictly better), so every copy of a
    non-dominated point is on the front; this keeps all seeds of an equally good configuration visible.

    Args:
        points: one row per trial, one value per objective; None or NaN marks a missing objective.
        maximize: per objective, True when higher is better (its length is the number of objectives, >= 1).

    Returns:
        Indices into `points` of the front members, ascending; [] for no (valid) points.

    Raises:
        ValueError: when `maximize` is empty or a point has the wrong number of values.
    """
    loss, valid = _loss_matrix(points, maximize)
    candidates = np.flatnonzero(valid)
    return candidates[_non_dominated(loss[candidates])].tolist()


def hypervolume(points: Points, reference: Sequence[float], maximize: Sequence[bool] = (True, True)) -> float:
    """Volume (area for two objectives) dominated by the points and bounded by the reference point.

    Only points strictly better than the reference on every objective count: one that ties or is worse on any
    objective bounds an empty box. Dominated points and duplicates are allowed and change nothing. Uses optuna's
    exact implementation (2D sweep, 3D and WFG for more objectives).

    Args:
        points: one row per trial, one value per objective; None or NaN rows are ignored.
        reference: the finite worst corner of the measured region, e.g. (0, 0) for two maximised scores in [0, 1].
        maximize: per objective, True when higher is better.

    Returns:
        The hypervolume; 0.0 when no point is strictly better than the reference.

    Raises:
        ValueError: when the reference or a point has the wrong number of values, or the reference is not finite.
    """
    loss, valid = _loss_matrix(points, maximize)
    ref = _reference_loss(reference, maximize)
    inside = valid & np.all(loss < ref, axis=1)
    if not inside.any():
        return 0.0
    return float(compute_hypervolume(loss[inside], ref))


def _signs(maximize: Sequence[bool]) -> np.ndarray:
    """+1 for minimised and -1 for maximised objectives: multiplying by it turns every objective into a loss."""
    if len(maximize) == 0:
        raise ValueError("maximize must name at least one objective")
    return np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)


def _loss_matrix(points: Points, maximize: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The points as an [N, M] "lower is better" float matrix, and a [N] mask of the rows without NaN/None."""
    signs = _signs(maximize)
    for index, point in enumerate(points):
        if len(point) != len(signs):
            raise ValueError(f"point {index} has {len(point)} values, expected {len(signs)} (one per objective)")
    values = [[np.nan if v is None else float(v) for v in point] for point in points]
    loss = np.asarray(values, dtype=float).reshape(len(values), len(signs)) * signs
    return loss, ~np.isnan(loss).any(axis=1)


def _reference_loss(reference: Sequence[float], maximize: Sequence[bool]) -> np.ndarray:
    """The reference point in loss space; it must be finite, or the dominated volume would be infinite."""
    signs = _signs(maximize)
    if len(reference) != len(signs):
        raise ValueError(f"reference has {len(reference)} values, expected {len(signs)} (one per objective)")
    ref = np.asarray(reference, dtype=float) * signs
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be finite, got {list(reference)}")
    return ref


def _non_dominated(loss: np.ndarray) -> np.ndarray:
    """[N] mask of the rows of an [N, M] loss matrix (no NaN) that no other row dominates.

    Rows are de-duplicated first: among distinct rows, "<= everywhere" already implies "< somewhere", so one
    vectorised comparison per distinct row decides dominance, and copies share their row's verdict.
    """
    if len(loss) == 0:
        return np.zeros(0, dtype=bool)
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)
    on_front = np.ones(len(unique), dtype=bool)
    for row in range(len(unique)):
        weakly_better = np.all(unique <= unique[row], axis=1)
        weakly_better[row] = False
        on_front[row] = not weakly_better.any()
    return on_front[inverse.reshape(-1)]
