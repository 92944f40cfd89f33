"""What a run leaves behind: the state saved beside each DeepSpeed checkpoint, the resume from it, and the outcome
file that is a run's one final result. Where checkpoints go is the run's session's business
(`trainables.engine.sessions`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trainables.atomic_files import write_json_atomic
from trainables.report_keys import OUTCOME_FILE

# Beside the DeepSpeed checkpoint: the seed, the epochs done, the per-epoch history and the objective's state.
STATE_FILE = "trial_state.json"


def restore_state(engine, checkpoint, fresh: dict) -> dict:
    """`fresh`, or the state saved in `checkpoint` (the run's newest, or None) when it holds `fresh["seed"]`, with
    the engine (weights, optimizer, lr schedule) loaded from it.

    A repeated-seed run's newest checkpoint may be an earlier seed's: that one starts the seed over instead.
    """
    if checkpoint is None:
        return fresh
    with checkpoint.as_directory() as ckpt_dir:
        saved = json.loads((Path(ckpt_dir) / STATE_FILE).read_text())
        if saved.get("seed", fresh["seed"]) != fresh["seed"]:
            return fresh
        engine.load_checkpoint(ckpt_dir, load_lr_scheduler_states=True)
    return saved


def write_outcome(metrics: dict, out: Path, rank: int, worker_started_at: float | None = None) -> None:
    """A run's (or one seed's) final result, from rank 0 to `out/OUTCOME_FILE`, the one place the driver reads it
    from (finished, diverged, or every seed done). The run's own last outcome (`worker_started_at` given) also
    carries the wall-clock times the driver needs to measure the run's start and end."""
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        clocks = {"reported_at": time.time(), "worker_started_at": worker_started_at} if worker_started_at else {}
        write_json_atomic(out / OUTCOME_FILE, {**metrics, **clocks})
