"""A run's one final result, as the driver reads it: rank 0's outcome file, turned into its final metrics, its
fixed costs, or the divergence it reports.

Kept apart from the worker code so the Tune trial driver (which only waits for a run and reads this) does not
import torch, transformers and DeepSpeed in every new Tune actor process.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainables.report_keys import DIVERGED, DIVERGENCE_REASON, OUTCOME_FILE


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf: the run stops at once instead of training on garbage, and is not retried
    (raised on the driver by `read_outcome`)."""


def clear_outcome(output_dir: str | Path) -> None:
    """Remove a previous attempt's outcome file, which must not pass for the coming run's."""
    (Path(output_dir) / OUTCOME_FILE).unlink(missing_ok=True)


def read_outcome(output_dir: str | Path, fit_started: float, fit_ended: float) -> dict:
    """Rank 0's final metrics from the outcome file of a run that ran from `fit_started` to `fit_ended` (epoch
    seconds), with its fixed costs.

    Raises:
        RuntimeError: when the run ended without writing it.
        NonFiniteLossError: when it says the loss diverged.
    """
    outcome = Path(output_dir) / OUTCOME_FILE
    if not outcome.is_file():
        raise RuntimeError(f"the run ended without its final report ({outcome} missing)")
    metrics = json.loads(outcome.read_text())
    if metrics.get(DIVERGED):
        raise NonFiniteLossError(metrics.get(DIVERGENCE_REASON, "the training loss became NaN or inf"))
    costs = fixed_costs(metrics, fit_started, fit_ended)  # takes the two clock readings out of `metrics`
    return {**metrics, **costs}


def fixed_costs(final: dict, fit_started: float, fit_ended: float) -> dict[str, float]:
    """A run's time outside training and evaluation, from the driver's and rank 0's clocks (epoch seconds; on
    several nodes they differ by the clock skew):

    - `startup_seconds`: `fit()` until rank 0 entered the training function (Ray Train's controller, placement
      group, worker processes, process group; in a warm slot, handing the job to its workers); with a restart
      after a fault, until the last attempt's entry;
    - `setup/*_seconds`: rank 0's own set-up phases (see `worker.SetupClock`);
    - `teardown_seconds`: rank 0's final report until `fit()` returned (worker group shut down);
    - `run_seconds`: the whole `fit()`.
    """
    costs = {"run_seconds": fit_ended - fit_started}
    if "worker_started_at" in final:
        costs["startup_seconds"] = final.pop("worker_started_at") - fit_started
    if "reported_at" in final:
        costs["teardown_seconds"] = fit_ended - final.pop("reported_at")
    return costs
