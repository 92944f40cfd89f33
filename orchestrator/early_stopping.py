"""`search.early_stopping`: stop a trial whose objectives, at an evaluated epoch, another trial already beat on all.

ASHA ranks trials at a rung by one metric; with two or more objectives that stops trials on the front of the
others (a trial that forgets little but keeps all its utility loses to one that forgets a lot at ASHA's first
objective). The multi-objective rule here (after MO-ASHA, Schmucker et al. 2021, which ranks a rung by
non-dominated sorting) keeps every epoch a rung: when a trial reports its objectives at epoch e >= `grace_epochs`
(before its last epoch), its point is compared with the points the other trials reported at the same epoch, and
the trial is stopped when one of them is better by at least `margin` on every objective. A point on the rung's
current front is never dominated, so it is never stopped; identical points do not dominate each other.

A stopped trial ends KILLED in MLflow ("stopped early by the scheduler") and PRUNED in Optuna (its last result
lacks `trial_complete`), so it never reaches the front. The rung points live in the driver: a resumed sweep
starts them anew, so it stops fewer trials until its rungs fill again, never more.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.pareto import finite_number, maximize_flags
from trainables.report_keys import TRIAL_COMPLETE


def dominated_by(point: Sequence[float], others: Sequence[Sequence[float]], maximize: Sequence[bool],
                 margin: float) -> bool:
    """Whether some point of `others` is better than `point` by at least `margin` on every objective, and strictly
    better on one (with margin 0 that is Pareto dominance)."""
    signs = [1.0 if up else -1.0 for up in maximize]
    for other in others:
        gains = [s * (o - p) for s, o, p in zip(signs, other, point)]
        if all(g >= margin for g in gains) and any(g > 0 for g in gains):
            return True
    return False


class DominatedStopping(FIFOScheduler):
    """Tune's scheduler for `search.early_stopping` (see the module docstring).

    Args:
        objectives: (metric, "max" | "min") pairs, as in the sweep file.
        epochs: the trials' `train.epochs`; a report at the last epoch is never stopped (the trial is done).
        grace_epochs: epochs every trial trains before it can be stopped.
        margin: how much better, on every objective, a point must be to stop another.
    """

    def __init__(self, objectives: Sequence[tuple[str, str]], epochs: int, grace_epochs: int, margin: float) -> None:
        super().__init__()
        self.names = [metric for metric, _ in objectives]
        self.maximize = maximize_flags(objectives)
        self.epochs, self.grace_epochs, self.margin = epochs, grace_epochs, margin
        self.rungs: dict[int, dict[str, list[float]]] = {}  # epoch -> trial id -> its objectives there

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives are its own, not Tune's single metric

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get("epoch")
        values = [result.get(name) for name in self.names]
        if result.get(TRIAL_COMPLETE) or not isinstance(epoch, int) or not all(map(finite_number, values)):
            return TrialScheduler.CONTINUE
        rung = self.rungs.setdefault(epoch, {})
        rung[trial.trial_id] = [float(v) for v in values]
        if epoch < self.grace_epochs or epoch >= self.epochs:
            return TrialScheduler.CONTINUE
        others = [p for trial_id, p in rung.items() if trial_id != trial.trial_id]
        if dominated_by(rung[trial.trial_id], others, self.maximize, self.margin):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"DominatedStopping: {sum(map(len, self.rungs.values()))} rung points over epochs {sorted(self.rungs)}"
