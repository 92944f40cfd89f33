"""Writing a trained model as a Hugging Face model directory, replaced atomically."""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path

import torch.distributed as dist


def save_model(engine, tokenizer, out_dir: Path, rank: int) -> None:
    """Write the trained model (full weights, safetensors) and tokenizer to `out_dir` from rank 0.

    Under ZeRO-3 the partitioned parameters are gathered first; every rank must call this.
    """
    import deepspeed

    module = engine.module
    params = list(module.parameters())
    zero3 = engine.zero_optimization_stage() == 3
    gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None) if zero3 else nullcontext()
    with gather:
        if rank == 0:
            tmp = out_dir.with_name(out_dir.name + ".tmp")
            state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            _replace_dir(tmp, out_dir)
    if dist.is_initialized():
        dist.barrier()


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move `tmp` to `final`, replacing an older `final`, so a reader never sees a half-written model."""
    if final.exists():
        old = final.with_name(final.name + f".old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
