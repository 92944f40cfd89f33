"""A Ray Tune callback that mirrors the sweep into MLflow, on the driver (one writer for the tracking store).

Ray's `MLflowLoggerCallback` keeps no state across `Tuner.restore` and duplicates runs on resume; here every child
run is looked up by its trial id first, so a resumed sweep continues the same runs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence

from ray.tune import Callback

from orchestrator import tracking
from orchestrator.pareto_artifacts import Marker
from trainables.report_keys import DIVERGED, DIVERGENCE_REASON, TRIAL_COMPLETE

# Tune's bookkeeping keys, not metrics of ours.
_TUNE_KEYS = {"time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "iterations_since_restore",
              "time_since_restore", "pid", "done", "checkpoint_path", "date", "hostname", "node_ip", "trial_id",
              "experiment_tag", "config"}
# String values of a result kept as tags of the child run (MLflow metrics are numbers only).
_RESULT_TAGS = {"node_id": "clreg.node_id", DIVERGENCE_REASON: "clreg.divergence"}


class SweepTracker(Callback):
    """Creates a child run per trial, logs per-epoch and final metrics, and refreshes the Pareto front.

    Args:
        runs: the sweep's MLflow runs.
        objectives: (metric, mode) pairs of the front.
        describe: a trial's tags, from its sampled parameters.
        record: the run record params of a trial (`orchestrator.run_record.trial_params`), from its sampled
            parameters; logged beside them.
        markers: the reference models drawn on the front's pictures.
    """

    def __init__(self, runs: tracking.SweepRuns, objectives: list[tuple[str, str]],
                 describe: Callable[[dict], dict[str, str]], record: Callable[[dict], Mapping[str, str]],
                 markers: Sequence[Marker]) -> None:
        self.runs = runs
        self.objectives = objectives
        self.describe = describe
        self.record = record
        self.markers = list(markers)
        self._run_ids: dict[str, str] = {}

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self._run_ids:
            tags = {"clreg.trial_id": trial.trial_id, **self.describe(trial.config)}
            params = {**dict(trial.config), **self.record(dict(trial.config))}
            self._run_ids[trial.trial_id] = tracking.child_run(self.runs, trial.trial_id, params, tags)
        return self._run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        metrics = {k: v for k, v in result.items() if k not in _TUNE_KEYS and k != TRIAL_COMPLETE}
        run_id = self._run_id(trial)
        tracking.log_metrics(self.runs, run_id, metrics, step=int(result.get("epoch", 0)))
        tags = {_RESULT_TAGS[k]: str(v) for k, v in result.items() if k in _RESULT_TAGS}
        if tags:
            tracking.set_tags(self.runs, run_id, tags)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        run_id = self._run_id(trial)
        if result.get(DIVERGED):
            reason = str(result.get(DIVERGENCE_REASON, "the training loss became NaN or inf"))
            tracking.finish_child(self.runs, run_id, "FAILED", reason)
            _say(f"trial {trial.trial_id} FAILED (diverged): {reason}")
            return
        complete = bool(result.get(TRIAL_COMPLETE))
        tracking.finish_child(self.runs, run_id, "FINISHED" if complete else "KILLED",
                              None if complete else "stopped early by the scheduler")
        summary = tracking.update_pareto(self.runs, self.objectives, markers=self.markers)
        values = ", ".join(f"{m}={_fmt(result.get(m))}" for m, _ in self.objectives)
        _say(f"trial {trial.trial_id} done ({values}); {summary.num_trials} complete, "
                 f"{len(summary.front)} on the Pareto front, hypervolume {summary.hypervolume:.4g}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        reason = _error_text(trial)
        tracking.finish_child(self.runs, self._run_id(trial), "FAILED", reason)
        _say(f"trial {trial.trial_id} FAILED: {reason.splitlines()[-1] if reason else 'unknown error'}")


def _say(line: str) -> None:
    """Progress lines beside Tune's table (plain stderr: the callback is pickled with the experiment state)."""
    print(f"[clreg-sweep] {line}", file=sys.stderr, flush=True)


def _error_text(trial) -> str:
    """The last lines of the trial's error, which name the cause (e.g. the non-finite loss)."""
    try:
        path = trial.error_file
        if path:
            with open(path) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
            causes = [ln for ln in lines if "Error" in ln and ":" in ln]
            return (causes[-1] if causes else lines[-1]).strip()[:500]
    except OSError:
        pass
    return "unknown error (no error file)"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and math.isfinite(v) else "missing"
