"""`search.constraints`: bounds a trial must meet to count, resolved once and judged the same way everywhere.

A sweep that maximises forget quality and model utility will happily put a collapsed model on its front: forget
quality 1 at utility 0.02 is not dominated by anything that kept its utility. A constraint such as
`{metric: model_utility, min: 0.9, of: target}` says which trials are admissible at all. The bounds are resolved
to absolute numbers once the reference points are scored (`resolve_bounds`); from then on one function
(`violations`) judges a trial's final metrics, and every reader uses its verdict: the searcher tells it to Optuna's
constrained samplers (`constraints_func`, where a value <= 0 means satisfied), the tracker tags the trial's MLflow
run `feasible=true|false` and keeps infeasible runs out of the front and hypervolume, and the report greys them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.pareto import finite_number

if TYPE_CHECKING:
    from orchestrator.references import References
    from orchestrator.sweep_config import Constraint

TAG_FEASIBLE = "feasible"
TAG_VIOLATION = "clreg.infeasible"  # which bound the trial missed, by how much
TAG_CONSTRAINTS = "clreg.constraints"  # the parent run: the resolved bounds, one per line
# The violation a sampler is told for a bound whose metric the trial did not report (a trial stopped before its
# evaluation): positive, so the trial counts as infeasible rather than as satisfying a bound it was never measured
# against.
UNMEASURED = 1.0


class ConstraintError(ValueError):
    """A relative bound cannot be resolved: its reference model has no usable value of the metric."""


@dataclass(frozen=True)
class Bound:
    """One resolved constraint: `low <= metrics[metric] <= high` (a missing side is unbounded).

    Attributes:
        metric: the metric the bound applies to.
        low, high: the absolute bounds, None where the constraint gave none.
        text: how the bound was stated and what it resolved to, e.g. "model_utility >= 0.3712 (0.9 x target
            0.4124)"; the console, the parent run's tag and the report show it.
    """

    metric: str
    low: float | None
    high: float | None
    text: str


def resolve_bounds(constraints: Sequence[Constraint], references: References) -> list[Bound]:
    """The constraints as absolute bounds; a relative one (`of`) multiplies its factors by that reference
    model's value of the metric.

    Raises:
        ConstraintError: a relative constraint whose reference model is absent, lacks the metric, or has a value
            <= 0 (a factor of it would flip or vanish); the message names the constraint and the fix.
    """
    points = {p.name: p for p in references.points}
    bounds = []
    for i, c in enumerate(constraints):
        if c.of is None:
            bounds.append(Bound(c.metric, c.min, c.max, _stated(c.metric, c.min, c.max)))
            continue
        field = f"search.constraints[{i}] ({c.metric}, of: {c.of})"
        point = points.get(c.of)
        if point is None:
            why = references.absent.get(c.of, "it was not scored")
            raise ConstraintError(f"{field}: there is no {c.of} point to be relative to ({why}); give absolute bounds "
                                  f"(drop `of`)")
        value = point.metrics.get(c.metric)
        if value is None or not value > 0:
            found = "has no value of it" if value is None else f"has {value:.4g}"
            raise ConstraintError(f"{field}: the {c.of} {found}; a relative bound needs a positive reference value; "
                                  f"give absolute bounds (drop `of`)")
        low = None if c.min is None else c.min * value
        high = None if c.max is None else c.max * value
        factors = " and ".join(f"{f:g}" for f in (c.min, c.max) if f is not None)
        bounds.append(Bound(c.metric, low, high, f"{_stated(c.metric, low, high)} ({factors} x {c.of} {value:.4g})"))
    return bounds


def violations(metrics: Mapping[str, object], bounds: Sequence[Bound]) -> list[float]:
    """Per bound, how far the trial's metric lies outside it (<= 0: inside), as Optuna's `constraints_func`
    expects; `UNMEASURED` for a metric the trial did not report as a finite number."""
    out = []
    for b in bounds:
        value = metrics.get(b.metric)
        if not finite_number(value):
            out.append(UNMEASURED)
            continue
        sides = [b.low - value if b.low is not None else -math.inf, value - b.high if b.high is not None else -math.inf]
        out.append(float(max(sides)))
    return out


def violation_text(metrics: Mapping[str, object], bounds: Sequence[Bound]) -> str:
    """The bounds the trial misses, with its values ("" when it meets all of them)."""
    missed = []
    for b, amount in zip(bounds, violations(metrics, bounds)):
        if amount > 0:
            value = metrics.get(b.metric)
            shown = f"{value:.4g}" if finite_number(value) else "not measured"
            missed.append(f"{b.metric}={shown} outside {b.text}")
    return "; ".join(missed)


def as_written(constraint: Constraint) -> str:
    """A constraint before it is resolved, e.g. "model_utility >= 0.9 x target" (what `validate` prints)."""
    scale = f" x {constraint.of}" if constraint.of else ""
    return _stated(constraint.metric, constraint.min, constraint.max, scale)


def _stated(metric: str, low: float | None, high: float | None, scale: str = "") -> str:
    if low is not None and high is not None:
        return f"{low:.4g}{scale} <= {metric} <= {high:.4g}{scale}"
    return f"{metric} >= {low:.4g}{scale}" if low is not None else f"{metric} <= {high:.4g}{scale}"
