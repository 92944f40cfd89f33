"""The DeepSpeed config and learning-rate schedule of a trial, built from `TrainConfig`.

CPU runs use torch's AdamW through DeepSpeed (`torch_adam`) and never DeepSpeed's own CPU optimizer, which would
JIT-compile C++ ops for one to two minutes at every worker start.

The schedule is ours (`linear_schedule`), not DeepSpeed's `WarmupDecayLR`: that one forces at least two warm-up steps
starting from `warmup_min_lr`, so with `warmup_min_lr=0` the first two optimizer steps of every run left the weights
unchanged, which on a 9-step trial is a fifth of its training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from trainables.config import TrainConfig


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): a linear ramp over `warmup_steps` that never
    starts at 0 (step k of the ramp runs at (k+1)/(warmup+1)), then a linear decay to 1/(total-warmup) at the last
    step, so every one of the `total_steps` steps moves the weights."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(total_steps - step, 1) / max(total_steps - warmup_steps, 1)


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[torch.optim.Optimizer], LambdaLR]:
    """What `deepspeed.initialize(lr_scheduler=...)` takes: a callable that wraps DeepSpeed's basic optimizer (the
    one ZeRO steps) in a `LambdaLR` of `lr_factor`. Its state is the step counter, so checkpoints resume it."""

    def build(optimizer: torch.optim.Optimizer) -> LambdaLR:
        return LambdaLR(optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))

    return build


def deepspeed_config(train: TrainConfig, dtype: str, world_size: int, lr: float | None = None,
                     micro_batch: int | None = None) -> dict:
    """DeepSpeed config dict for one training run (pass `linear_schedule` as the engine's lr scheduler).

    Args:
        train: Engine settings (ZeRO stage, micro-batch, accumulation, lr, warmup, weight decay).
        dtype: "fp32" or "bf16" (no fp16: it needs loss scaling and is unavailable on CPU).
        world_size: Number of data-parallel workers.
        lr: Overrides `train.lr` (prepare's fine-tuning uses its own).
        micro_batch: Overrides `train.micro_batch_size`.
    """
    lr = train.lr if lr is None else lr
    micro = train.micro_batch_size if micro_batch is None else micro_batch
    zero: dict = {"stage": train.zero_stage}
    if train.zero_stage == 3:
        zero.update({"stage3_param_persistence_threshold": 0, "stage3_gather_16bit_weights_on_model_save": True})
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": micro * train.grad_accum * world_size,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": train.weight_decay,
                       "torch_adam": True},
        },
        "zero_force_ds_cpu_optimizer": False,
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == "bf16"},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def inference_config(dtype: str, world_size: int) -> dict:
    """ZeRO-3 config for a frozen reference model, partitioned like the trained one (no optimizer)."""
    return {
        "train_micro_batch_size_per_gpu": 1,
        "train_batch_size": world_size,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "bf16": {"enabled": dtype == "bf16"},
        "steps_per_print": 1 << 30,
    }
