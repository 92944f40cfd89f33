"""Pieces both recipes' training loops use: the DeepSpeed engine, the reference model, the divergence check and
the epoch's loss averages, each agreeing across the data-parallel workers."""

from __future__ import annotations

import torch
import torch.distributed as dist

from trainables.config import TrialConfig
from trainables.engine.deepspeed_config import deepspeed_config, inference_config, linear_schedule
from trainables.engine.job import WorkerPlace
from trainables.model.loading import load_causal_lm
from trainables.report_keys import DIVERGED, DIVERGENCE_REASON, loss_metric


def build_engine(model, cfg: TrialConfig, world: int, lr: float, micro_batch: int, total_steps: int):
    """The DeepSpeed engine that trains `model`'s trainable parameters with the trial's optimizer and lr schedule."""
    import deepspeed

    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(cfg.train, cfg.model.dtype, world, lr=lr, micro_batch=micro_batch),
        lr_scheduler=linear_schedule(cfg.train.warmup_steps, total_steps),
    )
    return engine


def reference_model(model_dir: str, cfg: TrialConfig, place: WorkerPlace):
    """Frozen copy of the starting model; partitioned with ZeRO-3 when the trained model is, else replicated."""
    import deepspeed

    ref = load_causal_lm(model_dir, cfg.model, trainable=False).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    if cfg.train.zero_stage == 3:
        ref_engine, *_ = deepspeed.initialize(model=ref, config=inference_config(cfg.model.dtype, place.world))
        ref_engine.eval()
        return ref_engine
    return ref.to(place.device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class Diverged(RuntimeError):
    """The training loss became NaN or inf on some worker: every rank raises it at the same micro-step (as Ray
    Train requires), and the run ends with `outcome()` instead of a checkpoint, so nothing diverged is resumed."""

    def __init__(self, reason: str, epoch: int) -> None:
        super().__init__(reason)
        self.reason, self.epoch = reason, epoch

    def outcome(self) -> dict:
        return {DIVERGED: 1, "epoch": self.epoch, DIVERGENCE_REASON: self.reason}


def check_finite(loss: torch.Tensor, device: torch.device, epoch: int, step: int, lr: float) -> None:
    """Raise `Diverged` unless `loss` is finite on all workers (one scalar all-reduce when there are several).

    Raises:
        Diverged: naming this rank's value, the epoch, step and learning rate.
    """
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item() != 0.0:
        raise Diverged(f"training loss became non-finite (this rank: {loss.item()}) at epoch {epoch}, step {step} "
                       f"(lr={lr}); trial stopped", epoch)


def all_mean(value: float, device: torch.device) -> float:
    """`value` averaged over all workers."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return float(t.item())


class EpochSums:
    """Running sums of per-micro-batch loss terms (`LOSS_TERMS` names), averaged over all micro-batches of all
    workers and reported under `loss_metric(term)`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: dict[str, float]) -> None:
        self.count += 1
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def all_reduced_means(self, device: torch.device) -> dict[str, float]:
        keys = sorted(self.sums)
        t = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64, device=device)
        if dist.is_initialized():
            dist.all_reduce(t)
        return {loss_metric(k): float(t[i] / t[-1]) for i, k in enumerate(keys)}
