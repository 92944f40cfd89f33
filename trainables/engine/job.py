"""What a run's workers are asked to do (`WorkerJob`), where one runs (`WorkerPlace`), and its set-up clock.

The Tune trial driver builds a `WorkerJob` too, so this module imports torch only where a worker needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trainables.config import TrialConfig

if TYPE_CHECKING:
    import torch


@dataclass
class WorkerJob:
    """What one Ray Train run does, passed as `train_loop_config` (Ray pickles it to every worker).

    `trial` is the validated config itself, so a worker does not parse a dump of it again.
    """

    trial: TrialConfig
    task: str  # "unlearn", "finetune" or "attack" (`worker.RECIPES`)
    model_dir: str
    output_dir: str
    finetune_split: str = "target"  # finetune only: "target" (forget+retain) or "oracle" (retain only)
    evaluate: bool = True
    oracle_reference: str | None = None
    attack_reference: str | None = None  # unlearn with attack.when final: the oracle's and target's attack figures
    attack_models: dict[str, str] = field(default_factory=dict)  # attack only: {"oracle": dir, "target": dir}
    seeds: list[int] = field(default_factory=list)  # unlearn only: train once per seed, into output_dir/seed-<s>/


@dataclass(frozen=True)
class WorkerPlace:
    """This worker's rank among `world` workers and the device it trains on."""

    rank: int
    world: int
    device: torch.device

    @classmethod
    def current(cls, cfg: TrialConfig) -> WorkerPlace:
        """The place Ray Train gave this process (a GPU when the trial asks for one and there is one)."""
        import ray.train
        import torch

        ctx = ray.train.get_context()
        device = torch.device("cpu")
        if cfg.train.gpus_per_worker > 0 and torch.cuda.is_available():
            import ray.train.torch

            device = ray.train.torch.get_device()
        return cls(ctx.get_world_rank(), ctx.get_world_size(), device)


@dataclass
class SetupClock:
    """Where a worker's start-up time goes (DeepSpeed import, data, model, engine, reference model, restore).

    Reported with the final metrics as `setup/<phase>_seconds`; the outcome file also gets `worker_started_at`
    (epoch seconds), so the driver can split a run's fixed cost into Ray Train's start (fit -> worker entry), this
    set-up, and its end (see `trainer.fixed_costs`).
    """

    started_at: float = field(default_factory=time.time)
    seconds: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[f"setup/{phase}_seconds"] = now - self._last
        self._last = now
