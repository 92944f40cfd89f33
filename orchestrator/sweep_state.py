"""`sweep_state.json`: where a sweep's MLflow runs are, read back by `resume`, `report` and `ui`.

The sweep driver writes it once it has opened its MLflow runs. A folder copied by hand, cut short or edited can
hold anything there, so the file is read in one place that refuses every damaged form (missing, not JSON, not an
object, a key missing or of the wrong type) with a message naming the file and the key, instead of the KeyError or
TypeError a caller would otherwise raise. Kept apart from `orchestrator.sweep` so that `ui` reads it without
importing torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "sweep_state.json"
REQUIRED_KEYS = ("tracking_uri", "experiment_id", "parent_run_id")


class SweepStateError(ValueError):
    """A sweep folder's `sweep_state.json` is missing or damaged (the message names the file and the key)."""


@dataclass(frozen=True)
class SweepState:
    """The MLflow store of a sweep and its experiment and parent run, as the driver recorded them."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def read_state(root: str | Path) -> SweepState:
    """The state recorded in `root/sweep_state.json`.

    Raises:
        SweepStateError: the file is missing (not a sweep folder, or its sweep stopped before it opened its MLflow
            runs), unreadable, not a JSON object, or lacks one of `REQUIRED_KEYS` as a non-empty string.
    """
    file = Path(root) / STATE_FILE
    if not file.is_file():
        raise SweepStateError(f"{file} does not exist: {Path(root)} is not a sweep directory, or its sweep stopped "
                              "before it opened its MLflow runs")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SweepStateError(f"{file} is not JSON (line {error.lineno}: {error.msg}); a sweep writes an object "
                              f"with the keys {', '.join(REQUIRED_KEYS)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SweepStateError(f"{file} cannot be read: {error}") from None
    if not isinstance(state, dict):
        raise SweepStateError(f"{file} holds a JSON {type(state).__name__}, not an object with the keys "
                              f"{', '.join(REQUIRED_KEYS)}")
    values = {}
    for key in REQUIRED_KEYS:
        value = state.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key == "experiment_id":
            value = str(value)  # MLflow's ids are strings; an id written as a number means the same experiment
        if not isinstance(value, str) or not value:
            got = "missing" if key not in state else f"{type(value).__name__} {str(value)[:40]!r}"
            raise SweepStateError(f"{file}: key {key!r} must be a non-empty string, got {got}; a sweep writes "
                                  f"{', '.join(REQUIRED_KEYS)}")
        values[key] = value
    return SweepState(**values)
