"""The DeepSpeed config of a trial, built from `TrainConfig`.

CPU runs use torch's AdamW through DeepSpeed (`torch_adam`) and never DeepSpeed's own CPU optimizer, which would
JIT-compile C++ ops for one to two minutes at every worker start.
"""

from __future__ import annotations

from trainables.config import TrainConfig


def deepspeed_config(train: TrainConfig, dtype: str, world_size: int, total_steps: int, lr: float | None = None,
                     micro_batch: int | None = None) -> dict:
    """DeepSpeed config dict for one training run.

    Args:
        train: Engine settings (ZeRO stage, micro-batch, accumulation, lr, warmup, weight decay).
        dtype: "fp32" or "bf16" (no fp16: it needs loss scaling and is unavailable on CPU).
        world_size: Number of data-parallel workers.
        total_steps: Optimizer steps of the whole run (for the linear decay of the lr).
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
        "scheduler": {
            "type": "WarmupDecayLR",
            "params": {"warmup_min_lr": 0.0, "warmup_max_lr": lr, "warmup_num_steps": max(1, train.warmup_steps),
                       "warmup_type": "linear", "total_num_steps": max(total_steps, train.warmup_steps + 1)},
        },
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
