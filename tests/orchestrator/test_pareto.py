"""Pareto front and hypervolume against brute-force definitions on random points (ties, duplicates, NaN)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from orchestrator.pareto import hypervolume, pareto_front, summarize

SEEDS = range(6)
DIRECTIONS = [(True,), (False,), (True, True), (False, False), (True, False), (True, False, True), (False,) * 4]


def _brute_front(points, maximize):
    """O(n^2) dominance straight from the definition, in the original directions."""

    def valid(p):
        return all(v is not None and not math.isnan(v) for v in p)

    def at_least_as_good(a, b, up):
        return a >= b if up else a <= b

    def dominates(a, b):
        weakly = all(at_least_as_good(x, y, up) for x, y, up in zip(a, b, maximize))
        return weakly and any(x != y for x, y in zip(a, b))

    return [
        i
        for i, p in enumerate(points)
        if valid(p) and not any(valid(q) and dominates(q, p) for j, q in enumerate(points) if j != i)
    ]


def _brute_hv_grid(points, reference, maximize):
    """Exact hypervolume: cut space at every coordinate, count the cells some point dominates (any dimension)."""
    pts = [p for p in points if all(v is not None and not math.isnan(v) for v in p)]
    axes = [sorted({p[d] for p in pts} | {reference[d]}) for d in range(len(reference))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        mids = [(axes[d][k] + axes[d][k + 1]) / 2 for d, k in enumerate(cell)]
        widths = [axes[d][k + 1] - axes[d][k] for d, k in enumerate(cell)]
        covered = any(
            all(
                (reference[d] < m < p[d]) if up else (p[d] < m < reference[d])
                for d, (m, up) in enumerate(zip(mids, maximize))
            )
            for p in pts
        )
        if covered:
            total += math.prod(widths)
    return total


def _brute_hv_2d(points, reference, maximize):
    """2D hypervolume by hand: flip to minimisation, sort by the first objective, sum the rectangles."""
    signs = [-1 if up else 1 for up in maximize]
    ref = [r * s for r, s in zip(reference, signs)]
    loss = sorted(
        (p[0] * signs[0], p[1] * signs[1])
        for p in points
        if None not in p and not any(math.isnan(v) for v in p) and p[0] * signs[0] < ref[0] and p[1] * signs[1] < ref[1]
    )
    area, best_y = 0.0, ref[1]
    for (x, y), nxt in zip(loss, [p[0] for p in loss[1:]] + [ref[0]]):
        best_y = min(best_y, y)
        area += (nxt - x) * (ref[1] - best_y)
    return area


def _random_points(rng, n, m, *, with_missing=True):
    """Small integer coordinates make ties and exact duplicates common; a few rows get NaN or None."""
    pts = rng.integers(0, 6, size=(n, m)).astype(float).tolist()
    pts += [list(pts[i]) for i in rng.integers(0, n, size=3)]  # exact duplicates
    if with_missing:
        pts[0][0] = float("nan")
        pts[1][-1] = None
    rng.shuffle(pts)
    return pts


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("maximize", DIRECTIONS)
def test_front_matches_brute_force(seed, maximize):
    rng = np.random.default_rng(seed)
    pts = _random_points(rng, 25, len(maximize))
    assert pareto_front(pts, maximize) == _brute_front(pts, maximize)


@pytest.mark.parametrize("seed", SEEDS)
def test_front_matches_brute_force_on_continuous_points(seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((60, 3)).tolist()
    assert pareto_front(pts, (True, False, True)) == _brute_front(pts, (True, False, True))


def test_front_by_hand():
    pts = [(0.9, 0.1), (0.5, 0.5), (0.5, 0.5), (0.4, 0.4), (0.1, 0.9), (0.5, 0.3), (None, 1.0), (float("nan"), 0.0)]
    # duplicates both kept; (0.4, 0.4) and (0.5, 0.3) dominated; NaN/None rows neither on the front nor dominating
    assert pareto_front(pts) == [0, 1, 2, 4]
    assert pareto_front(pts, maximize=(False, False)) == [0, 3, 4, 5]


def test_nan_point_does_not_dominate():
    assert pareto_front([(float("nan"), 2.0), (1.0, 1.0)]) == [1]


def test_empty_input():
    assert pareto_front([]) == []
    assert pareto_front([], maximize=(True, False, True)) == []
    assert hypervolume([], reference=(0.0, 0.0)) == 0.0
    assert pareto_front([(None, 1.0)]) == []


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="point 1 has 3 values, expected 2"):
        pareto_front([(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="at least one objective"):
        pareto_front([(1,)], maximize=())
    with pytest.raises(ValueError, match="reference has 1 values"):
        hypervolume([(1, 2)], reference=(0,))
    with pytest.raises(ValueError, match="finite"):
        hypervolume([(1, 2)], reference=(0, float("-inf")))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("maximize", [(True, True), (False, False), (True, False), (False, True)])
def test_hypervolume_2d_matches_rectangles(seed, maximize):
    rng = np.random.default_rng(seed)
    pts = _random_points(rng, 30, 2)
    # a reference inside the cloud, so some points are worse than it on one or both objectives
    reference = [1.5 if up else 4.5 for up in maximize]
    expected = _brute_hv_2d(pts, reference, maximize)
    assert hypervolume(pts, reference, maximize) == pytest.approx(expected)
    assert hypervolume(pts, reference, maximize) == pytest.approx(_brute_hv_grid(pts, reference, maximize))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("maximize", [(True, True, True), (False, True, False), (True,), (False, True, True, False)])
def test_hypervolume_nd_matches_grid(seed, maximize):
    rng = np.random.default_rng(seed)
    pts = _random_points(rng, 12, len(maximize))
    pts += rng.random((5, len(maximize))).tolist()  # off-lattice points too
    reference = [1.0 if up else 5.0 for up in maximize]
    assert hypervolume(pts, reference, maximize) == pytest.approx(_brute_hv_grid(pts, reference, maximize))


def test_hypervolume_by_hand():
    # two maximised scores: union of [0,0.8]x[0,0.2] and [0,0.3]x[0,0.6] = 0.16 + 0.18 - 0.06
    assert hypervolume([(0.8, 0.2), (0.3, 0.6), (0.2, 0.1)], reference=(0.0, 0.0)) == pytest.approx(0.28)


def test_points_not_strictly_better_than_reference_add_nothing():
    ref = (0.5, 0.5)
    assert hypervolume([(0.5, 0.9), (0.9, 0.5), (0.1, 0.1)], reference=ref) == 0.0
    assert hypervolume([(0.5, 0.9), (0.6, 0.6)], reference=ref) == pytest.approx(0.01)
    assert hypervolume([(None, 0.9), (float("nan"), 0.9), (0.6, 0.6)], reference=ref) == pytest.approx(0.01)


def test_duplicates_and_dominated_points_change_nothing():
    base = [(0.8, 0.2), (0.3, 0.6)]
    assert hypervolume(base + base + [(0.1, 0.1)], reference=(0, 0)) == pytest.approx(hypervolume(base, (0, 0)))


def test_summarize_scores_the_rows_with_every_objective_by_hand():
    """Rows as trials report them: one lacks an objective, one is NaN; the front and hypervolume are those of the
    four complete rows, worked out by hand: front b, c, d (a is dominated by c); with reference (0, 0.9) the
    dominated region is, in strips of fq, [0, 0.5] x loss [0.1, 0.9], [0.5, 0.7] x [0.3, 0.9] and [0.7, 0.9] x
    [0.5, 0.9]: area 0.4 + 0.12 + 0.08."""
    rows = [{"fq": 0.6, "loss": 0.4, "other": 1.0},  # a
            {"fq": 0.5, "loss": 0.1},  # b
            {"fq": 0.99},  # misses an objective
            {"fq": 0.7, "loss": 0.3},  # c
            {"fq": math.nan, "loss": 0.0},  # non-finite
            {"fq": 0.9, "loss": 0.5}]  # d
    objectives = [("fq", "max"), ("loss", "min")]
    summary = summarize(rows, objectives, reference=(0.0, 0.9))
    assert summary.scored == [0, 1, 3, 5]
    assert summary.points == [[0.6, 0.4], [0.5, 0.1], [0.7, 0.3], [0.9, 0.5]]
    assert summary.front == [1, 2, 3] == pareto_front(summary.points, (True, False))
    assert summary.hypervolume == pytest.approx(0.4 + 0.12 + 0.08)
    assert summary.hypervolume == pytest.approx(hypervolume(summary.points, (0.0, 0.9), (True, False)))
    # Default reference: 0 on the maximised axis, the largest observed value on the minimised one.
    assert summarize(rows, objectives).reference == [0.0, 0.5]
    empty = summarize([{"fq": 0.5}], objectives)
    assert (empty.scored, empty.front, empty.hypervolume, empty.reference) == ([], [], 0.0, [0.0, 0.0])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        summarize(rows, [("fq", "up")])
