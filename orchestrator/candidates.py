"""`search.candidates: epochs`: every evaluated epoch of a finished trial is a point for the front.

A trial that evaluates every `eval.every` epochs already holds several models, and the field picks among them (MUSE
reports, per method, the first checkpoint whose knowledge memorisation is at or below the retrained model's;
open-unlearning users keep the best checkpoint). With candidates, the front, its hypervolume, the report and the
MLflow tags are over (trial, epoch) points: a trial is on the front (`pareto=true`) when one of its epochs is,
and `pareto_epochs` names them. The epochs' models are kept as `seed-<s>/epoch-<e>/` beside `final_model` (the
last epoch's) and, with `search.keep_models: front`, deleted once a finished trial's epoch is off the front: a
point the front leaves never returns to it, since a point that dominates it stays.

Where the points come from: the child run's metric history in MLflow, where the tracker logs every report at step
= epoch. A trial Tune restarts from a checkpoint reports the epochs after it again, at the same steps, so the last
value logged at a step is that epoch's value and each epoch counts once. A seed's per-epoch values are the
trial's values because a sweep with candidates trains one seed per point (`search_check.check_candidates`).

Which candidate Optuna is told (`search.trial_value`) is `pick`: the last, the one adding most hypervolume to the
study's trials, or the first at or below the oracle on a memorisation metric (MUSE's rule).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Run

from orchestrator.constraints import TAG_FEASIBLE, Bound, ConstraintError, violations
from orchestrator.pareto import default_reference, finite_number, hypervolume, maximize_flags
from orchestrator.references import References
from orchestrator.sweep_config import SearchConfig
from trainables.report_keys import epoch_model_dir, seed_dir

TAG_PARETO_EPOCHS = "pareto_epochs"  # a trial's epochs on the front, e.g. "2,6"
TAG_INFEASIBLE_EPOCHS = "clreg.infeasible_epochs"  # its epochs that miss a `search.constraints` bound
ATTR_EPOCH = "clreg.epoch"  # Optuna user attribute: the epoch whose values the trial was told


@dataclass(frozen=True)
class Candidate:
    """One point a finished trial offers the front.

    Attributes:
        run: the trial's child run.
        epoch: the evaluated epoch; None when the trial's final metrics are its one point (`candidates: final`).
        metrics: the objectives' (and, when read for the constraints, the bounded metrics') values there.
        feasible: whether it meets the sweep's constraints.
    """

    run: Run
    epoch: int | None
    metrics: dict[str, float]
    feasible: bool


def latest_by_step(points: Sequence[Metric]) -> dict[int, float]:
    """step -> the value logged last at that step (a restarted trial reports its epochs again)."""
    latest: dict[int, Metric] = {}
    for point in points:
        seen = latest.get(point.step)
        if seen is None or point.timestamp >= seen.timestamp:
            latest[point.step] = point
    return {step: point.value for step, point in latest.items()}


def epoch_values(history: Mapping[str, Sequence[Metric]]) -> dict[int, dict[str, float]]:
    """epoch -> metric -> value, over the epochs (steps) at which every metric of `history` has a finite value,
    each step's value the one logged last."""
    by_name = {name: latest_by_step(points) for name, points in history.items()}
    steps = set.intersection(*(set(v) for v in by_name.values())) if by_name else set()
    out = {}
    for step in sorted(steps):
        values = {name: by_step[step] for name, by_step in by_name.items()}
        if all(finite_number(v) for v in values.values()):
            out[step] = values
    return out


def read_epoch_values(client: MlflowClient, run_id: str, names: Sequence[str]) -> dict[int, dict[str, float]]:
    """`epoch_values` of the run's logged history of `names`."""
    return epoch_values({n: _history(client, run_id, n) for n in names})


def read_infeasible_epochs(client: MlflowClient, run_id: str, names: Sequence[str], bounds: Sequence[Bound]
                           ) -> list[int]:
    """The run's epochs with every objective of `names` whose bounded metrics miss a bound (a bounded metric an
    epoch did not log misses it)."""
    values = read_epoch_values(client, run_id, names)
    bounded = {b.metric: latest_by_step(_history(client, run_id, b.metric)) for b in bounds}
    return [epoch for epoch, metrics in values.items()
            if any(v > 0 for v in violations({**metrics, **{m: h.get(epoch) for m, h in bounded.items()}}, bounds))]


def _history(client: MlflowClient, run_id: str, name: str) -> list[Metric]:
    from orchestrator.tracking import read

    return read(f"history of {name}", client.tracking_uri, lambda: client.get_metric_history(run_id, name))


def run_candidates(client: MlflowClient, run: Run, names: Sequence[str], epochs: bool,
                   cache: dict[str, dict[int, dict[str, float]]] | None = None) -> list[Candidate]:
    """The points a FINISHED child run offers: its final metrics, or (`epochs`) each epoch whose history has every
    objective of `names`, feasible unless the tracker tagged it infeasible. `cache` (run id -> its epochs' values)
    spares re-reading the history of runs that have ended."""
    if not epochs:
        return [Candidate(run, None, dict(run.data.metrics), run.data.tags.get(TAG_FEASIBLE) != "false")]
    run_id = run.info.run_id
    values = cache.get(run_id) if cache is not None else None
    if values is None:
        values = read_epoch_values(client, run_id, names)
        if cache is not None:
            cache[run_id] = values
    missed = set(parse_epochs(run.data.tags.get(TAG_INFEASIBLE_EPOCHS, "")))
    return [Candidate(run, epoch, metrics, epoch not in missed) for epoch, metrics in values.items()]


def epochs_text(epochs: Iterable[int]) -> str:
    """Epochs as a tag value: "2,6"."""
    return ",".join(str(e) for e in sorted(epochs))


def parse_epochs(text: str) -> list[int]:
    return [int(e) for e in text.split(",") if e.strip()]


def candidate_model(trial_dir: Path, seed: int, epoch: int, last_epoch: int) -> Path:
    """The saved model of a trial's candidate: `final_model` for the last epoch, else `epoch-<e>/`."""
    run_dir = seed_dir(trial_dir, seed)
    return run_dir / "final_model" if epoch == last_epoch else epoch_model_dir(run_dir, epoch)


def prune_epoch_models(trial_dir: Path, keep: Iterable[int]) -> list[Path]:
    """Delete a finished trial's `epoch-<e>/` models except those of the epochs in `keep`; the deleted folders.
    `final_model` is never touched (the front attack, `eval` and `export` read it)."""
    kept = set(keep)
    gone = []
    for folder in sorted(trial_dir.glob("seed-*/epoch-*")):
        epoch = folder.name.removeprefix("epoch-")
        if folder.is_dir() and epoch.isdigit() and int(epoch) not in kept:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


def pick(rule: str, values: Mapping[int, Mapping[str, float]], objectives: Sequence[tuple[str, str]],
         bounds: Sequence[Bound] = (), told: Sequence[Sequence[float]] = (), selection_metric: str | None = None,
         oracle_value: float | None = None) -> int:
    """The epoch of a trial whose values Optuna is told (`search.trial_value`).

    Args:
        rule: last: the last epoch. best_hv: among the feasible epochs (all of them when none is), the one whose
            point added to `told` (the study's finished feasible trials' values) gives the largest hypervolume,
            with `pareto.default_reference` of all those points; a tie goes to the later epoch, so a trial whose
            every epoch is dominated is told its last, as with `last`. first_at_oracle: the first epoch whose
            `selection_metric` is at or below `oracle_value` (MUSE's checkpoint rule), else the last.
        values: epoch -> metrics (objectives, bounded metrics, the selection metric), at least one epoch.
        objectives: (metric, "max" | "min") pairs.
        bounds: the resolved constraints.
        told: the study's finished feasible trials' objective values.
        selection_metric, oracle_value: first_at_oracle's metric and the oracle's value of it.

    Raises:
        ValueError: for an unknown rule, or no epochs.
    """
    if not values:
        raise ValueError("no candidate epochs to pick from")
    epochs = sorted(values)
    if rule == "last":
        return epochs[-1]
    if rule == "first_at_oracle":
        return next((e for e in epochs if finite_number(values[e].get(selection_metric))
                     and values[e][selection_metric] <= oracle_value), epochs[-1])
    if rule != "best_hv":
        raise ValueError(f"trial_value must be last, best_hv or first_at_oracle, got {rule!r}")
    names, maximize = [m for m, _ in objectives], maximize_flags(objectives)
    feasible = [e for e in epochs if not any(v > 0 for v in violations(values[e], bounds))] or epochs
    points = {e: [values[e][n] for n in names] for e in feasible}
    reference = default_reference([*told, *points.values()], maximize)
    return max(feasible, key=lambda e: (hypervolume([*told, points[e]], reference, maximize), e))


def selection_reference(search: SearchConfig, references: References) -> float | None:
    """The oracle's value of `search.selection_metric` for `trial_value: first_at_oracle`; None for other rules.

    Raises:
        ConstraintError: the oracle point is absent or has no finite value of the metric (the message says why).
    """
    if search.candidates != "epochs" or search.trial_value != "first_at_oracle":
        return None
    oracle = next((p for p in references.points if p.name == "oracle"), None)
    field = f"search.trial_value: first_at_oracle ({search.selection_metric})"
    if oracle is None:
        raise ConstraintError(f"{field}: there is no oracle point to compare with "
                              f"({references.absent.get('oracle', 'it was not scored')})")
    value = oracle.metrics.get(search.selection_metric)
    if not finite_number(value):
        raise ConstraintError(f"{field}: the oracle has no value of it; allowed: a metric the oracle is scored on, "
                              f"e.g. {', '.join(sorted(oracle.metrics)[:6])}")
    return float(value)
