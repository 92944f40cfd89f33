"""Pareto front and hypervolume of finished trials, as pure functions over numbers.

A sweep reports several objectives per trial (by default forget quality and model utility, both maximised), so
there is no single best trial: the Pareto front is the set worth looking at, and its hypervolume is one number
that says whether a sweep (or a sampler) found a better set of trade-offs than another.

Both functions take plain sequences (one row per trial, one column per objective) and work in numpy on a
"lower is better" matrix, as optuna does in `optuna/study/_multi_objective.py`: maximised columns are negated
once, so the dominance test and optuna's hypervolume code only ever minimise.

Missing values: a trial that lacks an objective (None) or reported NaN is never on the front, never dominates
another trial and adds nothing to the hypervolume; it did not finish, so it says nothing about the trade-off.

`summarize` is the one place that turns trials' metrics into the front a sweep shows: the MLflow parent run
(`tracking.update_pareto`), the report and the studies all call it, so they count the same trials.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from optuna._hypervolume import compute_hypervolume

Points = Sequence[Sequence[float | None]]


@dataclass(frozen=True)
class FrontSummary:
    """The Pareto front of some trials.

    Attributes:
        scored: indices of the feasible rows that report every objective as a finite number, in input order.
        points: those rows' objective values, one list per scored row, in the objectives' order.
        front: indices into `points` (and `scored`) of the non-dominated points, ascending.
        hypervolume: the volume the points dominate up to `reference` (0.0 without points).
        reference: the hypervolume's reference point, one value per objective.
        infeasible: indices of the rows that report every objective but miss a constraint, in input order.
        infeasible_points: their objective values (shown greyed, never on the front or in the hypervolume).
    """

    scored: list[int]
    points: list[list[float]]
    front: list[int]
    hypervolume: float
    reference: list[float]
    infeasible: list[int]
    infeasible_points: list[list[float]]


def summarize(rows: Sequence[Mapping[str, object]], objectives: Sequence[tuple[str, str]],
              reference: Sequence[float] | None = None, feasible: Sequence[bool] | None = None) -> FrontSummary:
    """Front and hypervolume over the feasible rows (one metrics mapping per trial) that report every objective.

    Args:
        rows: each trial's metrics.
        objectives: (metric, "max" | "min") pairs, as in the sweep file.
        reference: the hypervolume's reference point; default `default_reference` of the scored points (it then
            moves as trials arrive: pass a fixed one to compare sweeps).
        feasible: per row, whether it meets the sweep's constraints (`orchestrator.constraints`); default all.

    Raises:
        ValueError: for a mode other than "max"/"min", a reference of the wrong length, or a `feasible` mask
            whose length is not the number of rows.
    """
    names = [metric for metric, _ in objectives]
    maximize = maximize_flags(objectives)
    if feasible is not None and len(feasible) != len(rows):
        raise ValueError(f"feasible has {len(feasible)} values, expected {len(rows)} (one per row)")
    measured = [i for i, row in enumerate(rows) if all(finite_number(row.get(n)) for n in names)]
    scored = [i for i in measured if feasible is None or feasible[i]]
    infeasible = [i for i in measured if feasible is not None and not feasible[i]]
    points = [[float(rows[i][n]) for n in names] for i in scored]
    ref = list(reference) if reference is not None else default_reference(points, maximize)
    volume = hypervolume(points, ref, maximize) if points else 0.0
    return FrontSummary(scored, points, pareto_front(points, maximize), volume, ref, infeasible,
                        [[float(rows[i][n]) for n in names] for i in infeasible])


def maximize_flags(objectives: Sequence[tuple[str, str]]) -> list[bool]:
    """Per objective, True when its mode is "max".

    Raises:
        ValueError: for a mode other than "max"/"min".
    """
    for _, mode in objectives:
        if mode not in ("max", "min"):
            raise ValueError(f"objective mode must be 'max' or 'min', got {mode!r}")
    return [mode == "max" for _, mode in objectives]


def default_reference(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[float]:
    """0.0 on maximised axes (the scores here live in [0, 1]), the largest observed value on minimised ones (there
    is no natural bound; 0.0 before any trial): the worst trial on a minimised axis then adds no volume."""
    return [0.0 if up else max((p[d] for p in points), default=0.0) for d, up in enumerate(maximize)]


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


def finite_number(value: object) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite: what counts as a reported metric value."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
