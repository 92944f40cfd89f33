"""What reaches the console: the sweep's own lines, not Ray's, DeepSpeed's and the libraries' internals.

Without `--verbose` a command shows warnings and errors of the libraries it drives, its own progress lines (one per
trial start and end, with the objectives) and Tune's table; Ray's and the libraries' info logs stay in Ray's
session logs (`/tmp/ray/session_latest/logs`). `--verbose` brings all of it back to the console.

Most knobs are environment variables the libraries read once, when first imported, so `configure_logging` runs at
the start of `main`, before anything imports Ray, Hugging Face or MLflow; the processes of a local Ray cluster
inherit them. This module imports none of those libraries.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from trainables.report_keys import VERBOSE_ENV

# Lines of Ray workers that the driver does not print (Ray's RAY_DEDUP_LOGS_SKIP_REGEX; they stay in the workers'
# log files). None of them is a Python log record of the worker, so no logger level can silence them:
INTERNAL_WORKER_LINES = "|".join([
    # Ray Train V2's controller, a C++ error log per run: its preemption watcher is restartable, a harmless setting.
    r"'PreemptionWatcher'.*constructor arguments in the object store",
    # DeepSpeed's print() when it loads its shared-memory communication op, twice per CPU worker.
    r"DeepSpeed \S+ built successfully",
    # The raylet's warning when Ray Train and Tune start more worker processes at once than the machine has CPUs:
    # each trial starts its own workers by design, so the warning names nothing to change.
    r"PYTHON worker processes have been started on node",
])

# Environment of a quiet console: each only where the user has not set it.
QUIET_ENV = {
    "RAY_DEDUP_LOGS_SKIP_REGEX": INTERNAL_WORKER_LINES,
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Loading weights" / "Writing model shards" bars, one per model load
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # "Creating initial MLflow database tables..." and the like
}


def configure_logging(verbose: bool) -> None:
    """Quiet the libraries' internals for this process and the Ray processes it starts, unless `verbose`.

    Sets the environment variables above (a user's own setting wins) and the `mlflow` logger, which MLflow
    configures once when imported; the `ray` logger's level is `ray.init`'s (see `ray_logging_level`).
    """
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if os.environ["MLFLOW_LOGGING_LEVEL"] == QUIET_ENV["MLFLOW_LOGGING_LEVEL"]:  # MLflow may be imported already
        logging.getLogger("mlflow").setLevel(logging.WARNING)


def is_verbose() -> bool:
    """Whether `configure_logging` was asked for everything (`--verbose`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def ray_logging_level() -> int:
    """The driver's `ray` logger level for `ray.init`: INFO lines ("Started a local Ray instance", Tune's "Wrote the
    latest version of all result files") only with `--verbose`."""
    return logging.INFO if is_verbose() else logging.WARNING


# Last parts of a dotted name that say nothing alone: the section before them is the label instead.
_UNNAMED = frozenset({"name", "enabled"})


def param_labels(names: Sequence[str]) -> dict[str, str]:
    """Short labels of searched parameters, for the progress lines and the table's columns: the last part of the
    dotted name (`clreg.tau` -> `tau`), its section where that part says nothing alone (`method.name` -> `method`,
    `clreg.enabled` -> `clreg`), the whole name where two parameters would share a label."""
    parts = [name.split(".") for name in names]
    short = [p[-2] if len(p) > 1 and p[-1] in _UNNAMED else p[-1] for p in parts]
    return {name: label if short.count(label) == 1 else name for name, label in zip(names, short)}


def format_value(value: Any) -> str:
    """A parameter or metric value as a person reads it: a float to 3 significant digits, `3e-4` rather than
    `0.0003` (learning rates), anything else as it is."""
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e3:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _trial(number: int, total: int) -> str:
    return f"trial {number}/{total}"


def _seconds(seconds: float | None, word: str) -> str:
    return f" {word} {seconds:.0f} s" if seconds is not None else ""


def _objectives(objectives: Sequence[str], result: Mapping[str, Any]) -> str:
    return " ".join(f"{m}={format_value(result[m]) if m in result else 'missing'}" for m in objectives)


def start_line(number: int, total: int, params: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """`trial 3/8 started: tau=0.31 lambda=0.8 layer=last-2 lr=3e-4` (parameters a trial does not have, e.g. a
    conditional one, are left out)."""
    values = " ".join(f"{label}={format_value(params[name])}" for name, label in labels.items() if name in params)
    return f"{_trial(number, total)} started: {values}".rstrip()


def done_line(number: int, total: int, seconds: float | None, objectives: Sequence[str],
              result: Mapping[str, Any]) -> str:
    """`trial 3/8 done in 41 s: forget_quality=0.012 model_utility=0.43`."""
    return f"{_trial(number, total)} done{_seconds(seconds, 'in')}: {_objectives(objectives, result)}"


def stopped_line(number: int, total: int, seconds: float | None, objectives: Sequence[str],
                 result: Mapping[str, Any]) -> str:
    """A trial the scheduler (`search.early_stopping`) stopped early, with the objectives of its last evaluation."""
    epoch = f" at epoch {result['epoch']}" if "epoch" in result else ""
    return (f"{_trial(number, total)} stopped early by the scheduler{_seconds(seconds, 'after')}{epoch}: "
            f"{_objectives(objectives, result)}")


def failed_line(number: int, total: int, seconds: float | None, reason: str, diverged: bool) -> str:
    """`trial 3/8 diverged after 12 s: <reason>` or `trial 3/8 failed after 12 s: <reason>`."""
    return f"{_trial(number, total)} {'diverged' if diverged else 'failed'}{_seconds(seconds, 'after')}: {reason}"
