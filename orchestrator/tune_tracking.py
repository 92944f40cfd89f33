"""A Ray Tune callback that mirrors the sweep into MLflow, on the driver (one writer for the tracking store).

Ray's `MLflowLoggerCallback` keeps no state across `Tuner.restore` and duplicates runs on resume; here every child
run is looked up by its trial id first, so a resumed sweep continues the same runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlflow import MlflowClient
from ray.tune import Callback, CLIReporter

from orchestrator import console_log, tracking
from orchestrator.candidates import (
    TAG_INFEASIBLE_EPOCHS,
    epochs_text,
    prune_epoch_models,
    read_infeasible_epochs,
)
from orchestrator.constraints import TAG_FEASIBLE, TAG_VIOLATION, Bound, violation_text
from orchestrator.pareto_artifacts import Marker
from orchestrator.run_record import RunRecord
from orchestrator.trial_record import TrialRecord, describe_trial
from trainables.config import TrialConfig
from trainables.report_keys import DIVERGED, DIVERGENCE_REASON, TRIAL_COMPLETE

# Tune's bookkeeping keys, not metrics of ours.
_TUNE_KEYS = {"time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "iterations_since_restore",
              "time_since_restore", "pid", "done", "checkpoint_path", "date", "hostname", "node_ip", "trial_id",
              "experiment_tag", "config"}
# String values of a result kept as tags of the child run (MLflow metrics are numbers only).
_RESULT_TAGS = {"node_id": "clreg.node_id", DIVERGENCE_REASON: "clreg.divergence"}


class SweepTable(CLIReporter):
    """Tune's live table, its columns the sweep's objectives and searched parameters.

    Ray 2.60's default output engine (RAY_AIR_NEW_OUTPUT=1) ignores a `progress_reporter`: it shows the first four
    reported metrics (here the training losses) and the parameters of a Tune search space (none here: the space is
    Optuna's, inside the searcher). The legacy engine honours this reporter, so `_tuner` selects it; at verbose=1
    it prints nothing per trial (the tracker's lines say when a trial starts and ends). Tune's system lines are left
    out: "Logical resource usage: 0/2 CPUs" always reads 0, since a trial asks Tune for one byte of memory and its
    Ray Train workers hold their CPUs in placement groups Tune does not count.
    """

    def report(self, trials, done: bool, *sys_info: str) -> None:
        super().report(trials, done)


def sweep_table(objectives: Sequence[str], params: Sequence[str]) -> SweepTable:
    """The table of a sweep: one row per trial, refreshed every 30 s and at the end."""
    return SweepTable(metric_columns={m: m for m in objectives}, parameter_columns=console_log.param_labels(params),
                      max_report_frequency=30, print_intermediate_tables=True)


class SweepTracker(Callback):
    """Creates a child run per trial, logs per-epoch and final metrics, refreshes the Pareto front, and prints one
    line when a trial starts (its parameters) and one when it ends (its objectives, or why it failed).

    Each child run gets the trial's record (`orchestrator.trial_record`), built by the same function the trial
    driver writes `trial.json` with: logged as the artifact `trial.json`, its tags derived from it, and the run
    record (`record.*` params) of the trial's resolved config beside the sampled parameters.

    Args:
        runs: the sweep's MLflow runs.
        objectives: (metric, mode) pairs of the front.
        trial_record: a trial's record from `trial_id` and sampled `params` (`build_record` with the sweep's base,
            seeds and model depth bound).
        run_record: the sweep's run record (versions, commit, data).
        markers: the reference models drawn on the front's pictures.
        num_trials: the trials the sweep runs (the N of "trial 3/N").
        params: the searched parameters, shown in a trial's start line.
        bounds: `search.constraints` resolved; a finished trial outside one is tagged `feasible=false` (with the
            bound it missed in `clreg.infeasible`) and kept off the front, one inside all `feasible=true`.
        candidates: `search.candidates: epochs` (`orchestrator.candidates`): a finished trial's evaluated epochs
            are its points, the epochs that miss a bound tagged `clreg.infeasible_epochs`.
        prune_in: with candidates and `search.keep_models: front`, the trials folder whose ended trials lose the
            `epoch-<e>/` models that are off the front; None keeps them all.
    """

    def __init__(self, runs: tracking.SweepRuns, objectives: list[tuple[str, str]],
                 trial_record: Callable[..., TrialRecord], run_record: RunRecord,
                 markers: Sequence[Marker], num_trials: int, params: Sequence[str],
                 bounds: Sequence[Bound] = (), candidates: bool = False, prune_in: Path | None = None) -> None:
        self.runs = runs
        self.bounds = list(bounds)
        self.candidates, self.prune_in = candidates, prune_in
        self._history: dict = {}  # run id -> its epochs' objective values, read once the run has ended
        self.objectives = objectives
        self.trial_record = trial_record
        self.run_record = run_record
        self.markers = list(markers)
        self.num_trials = num_trials
        self.labels = console_log.param_labels(params)
        self._run_ids: dict[str, str] = {}

    def _number(self, trials, trial) -> tuple[int, int]:
        """(this trial's number, of how many): Tune's trial list keeps creation order, restored trials first."""
        return trials.index(trial) + 1, max(self.num_trials, len(trials))

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self._run_ids:
            record = self.trial_record(trial_id=trial.trial_id, params=dict(trial.config))
            cfg = TrialConfig.model_validate(record.config)
            params = {**record.params, **self.run_record.params(cfg)}
            run_id = tracking.child_run(self.runs, trial.trial_id, params, describe_trial(record))
            tracking.log_trial_record(self.runs, run_id, record)
            self._run_ids[trial.trial_id] = run_id
        return self._run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_id(trial)
        _say(console_log.start_line(*self._number(trials, trial), dict(trial.config), self.labels))

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
        number, total = self._number(trials, trial)
        seconds = result.get("time_total_s")
        if result.get(DIVERGED):
            reason = str(result.get(DIVERGENCE_REASON, "the training loss became NaN or inf"))
            tracking.finish_child(self.runs, run_id, "FAILED", reason)
            _say(console_log.failed_line(number, total, seconds, reason, diverged=True))
            return
        complete = bool(result.get(TRIAL_COMPLETE))
        missed = violation_text(result, self.bounds)
        if self.bounds:
            tracking.set_tags(self.runs, run_id, {TAG_FEASIBLE: "false" if missed else "true",
                                                  **({TAG_VIOLATION: missed} if missed else {})})
        if self.bounds and self.candidates and complete:
            missed_epochs = read_infeasible_epochs(MlflowClient(self.runs.tracking_uri), run_id,
                                                   [m for m, _ in self.objectives], self.bounds)
            tracking.set_tags(self.runs, run_id, {TAG_INFEASIBLE_EPOCHS: epochs_text(missed_epochs)})
        tracking.finish_child(self.runs, run_id, "FINISHED" if complete else "KILLED",
                              None if complete else "stopped early by the scheduler")
        summary = tracking.update_pareto(self.runs, self.objectives, markers=self.markers, epochs=self.candidates,
                                         cache=self._history)
        if self.prune_in is not None:
            self._prune(trials, trial, summary)
        names = [m for m, _ in self.objectives]
        line = (console_log.done_line if complete else console_log.stopped_line)(number, total, seconds, names, result)
        infeasible = f", infeasible: {missed}" if missed else ""
        counted = (f"{summary.num_trials} feasible, {summary.num_infeasible} infeasible" if self.bounds
                   else f"{summary.num_trials} complete")
        if self.candidates:
            counted += f", {summary.num_candidates} feasible epoch candidates"
        _say(f"{line}{infeasible} ({counted}, {len(summary.front)} on the Pareto front, hypervolume "
             f"{summary.hypervolume:.4g})")

    def _prune(self, trials, trial, summary: tracking.ParetoSummary) -> None:
        """Delete the `epoch-<e>/` models of ended trials that are off the front (they never return to it)."""
        keep: dict[str, list[int]] = {}
        for row in summary.front:
            keep.setdefault(row["trial_id"], []).append(row["epoch"])
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {trial.trial_id}
        for trial_id in sorted(ended):
            prune_epoch_models(self.prune_in / trial_id, keep.get(trial_id, []))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        reason = _error_text(trial)
        tracking.finish_child(self.runs, self._run_id(trial), "FAILED", reason)
        seconds = (trial.last_result or {}).get("time_total_s")
        where = f" (error file: {trial.error_file})" if trial.error_file else ""
        _say(console_log.failed_line(*self._number(trials, trial), seconds,
                                     f"{reason.splitlines()[-1] if reason else 'unknown error'}{where}",
                                     diverged=False))


def _say(line: str) -> None:
    """Progress lines beside Tune's table (plain stderr: the callback is pickled with the experiment state)."""
    print(line, file=sys.stderr, flush=True)


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
