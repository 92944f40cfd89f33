"""How a run's workers report each epoch, checkpoint, and find their newest checkpoint: the two ways a run is
served.

- `RayTrainSession`: a cold run, one Ray Train run per trial (or per `prepare` model, attack, `clreg-sweep run`).
  Reports and checkpoints go through `ray.train.report`; Ray Train keeps the checkpoints and restarts the worker
  group after a fault.
- `SlotSession`: a trial in a warm slot (`trainables.engine.slot_worker`). Rank 0 posts each report to the slot
  pool (`orchestrator.slots`), which the trial's Tune driver reads; checkpoints go to `<run dir>/checkpoint/`,
  where the same trial restarted in a fresh slot finds them.

Both hold the worker's place and its `Resident` (what the process keeps between runs), so a recipe is written once
for both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from trainables.engine.checkpoints import STATE_FILE
from trainables.engine.job import WorkerPlace
from trainables.engine.resident import Resident

# A warm trial's newest checkpoint, under its run directory; the one before it while the newest is being swapped in.
CHECKPOINT_DIR = "checkpoint"
PREVIOUS_CHECKPOINT_DIR = "checkpoint.old"
_PARTIAL_CHECKPOINT_DIR = "checkpoint.new"


class TrialCancelled(Exception):
    """The slot pool asked the run to stop (Tune stopped the trial, or its driver is gone): every rank raises it at
    the same report, and the slot serves the next trial."""


@dataclass
class RayTrainSession:
    """A cold run's workers, inside a Ray Train run."""

    place: WorkerPlace
    resident: Resident

    def latest_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, engine, state: dict, metrics: dict, checkpoint: bool) -> None:
        """One epoch's `ray.train.report`, with a checkpoint when `checkpoint`: every worker saves its DeepSpeed shard,
        rank 0 the state, then all report the same checkpoint (Ray merges the shards)."""
        import ray.train

        if not checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="clreg-ckpt-") as tmp:
            _save(engine, state, Path(tmp), self.place.rank)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


@dataclass
class SlotSession:
    """A warm trial's workers, in a slot of the pool `pool` (a Ray actor handle), serving run `run_id`.

    Attributes:
        run_dir: the trial's output directory; its checkpoints go to `run_dir/CHECKPOINT_DIR`.
    """

    place: WorkerPlace
    resident: Resident
    run_dir: Path
    pool: object
    run_id: int

    def latest_checkpoint(self):
        """The trial's newest complete checkpoint (a Ray `Checkpoint` over its directory), or None."""
        import ray.train

        for name in (CHECKPOINT_DIR, PREVIOUS_CHECKPOINT_DIR):
            if (self.run_dir / name / STATE_FILE).is_file():
                return ray.train.Checkpoint.from_directory(str(self.run_dir / name))
        return None

    def report(self, engine, state: dict, metrics: dict, checkpoint: bool) -> None:
        """Checkpoint when `checkpoint`, then rank 0 posts `metrics` to the pool.

        Raises:
            TrialCancelled: on every rank, when the pool answers that the trial is cancelled.
        """
        import ray

        if checkpoint:
            self._checkpoint(engine, state)
        cancelled = [ray.get(self.pool.post.remote(self.run_id, metrics)) if self.place.rank == 0 else None]
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast_object_list(cancelled, src=0)
        if cancelled[0]:
            raise TrialCancelled(f"run {self.run_id} cancelled by the slot pool")

    def _checkpoint(self, engine, state: dict) -> None:
        """Every rank saves into a fresh partial directory; rank 0 then swaps it in for the newest, so a fault at any
        moment leaves one complete checkpoint (`latest_checkpoint` falls back to the previous one mid-swap)."""
        rank = self.place.rank
        partial = self.run_dir / _PARTIAL_CHECKPOINT_DIR
        current, previous = self.run_dir / CHECKPOINT_DIR, self.run_dir / PREVIOUS_CHECKPOINT_DIR
        if rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
        _barrier()
        _save(engine, state, partial, rank)
        if rank == 0:
            shutil.rmtree(previous, ignore_errors=True)
            if current.is_dir():
                current.rename(previous)
            partial.rename(current)
            shutil.rmtree(previous, ignore_errors=True)
        _barrier()


Session = RayTrainSession | SlotSession


def _save(engine, state: dict, directory: Path, rank: int) -> None:
    """Every worker's DeepSpeed shard and rank 0's `state` into `directory`; returns when all have written."""
    engine.save_checkpoint(str(directory), tag="latest_epoch")
    if rank == 0:
        (directory / STATE_FILE).write_text(json.dumps(state))
    _barrier()


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
