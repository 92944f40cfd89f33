"""Step throughput: tokens/s of one training step under DeepSpeed ZeRO-0/2/3 against a plain PyTorch loop
(benchmarks issue, item 1).

One process, one worker: the same random-weight Llama-shaped model, batch, dtype (fp32) and optimizer (AdamW) in a
plain `loss.backward(); opt.step()` loop and in DeepSpeed engines built from the trial's own DeepSpeed config
(`trainables.engine.deepspeed_config`), gloo process group of size 1. The variants run interleaved, a block of
steps each per round, and the ratio to the plain loop is taken per round; medians are reported.

    python -m benchmarks.step_throughput [--rounds 7] [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from benchmarks.common import free_port, machine, write_result
from trainables.config import TrainConfig
from trainables.engine.deepspeed_config import deepspeed_config
from trainables.objectives import batch_nll

SHAPE = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8, vocab_size=8192)


def _init_process_group() -> None:
    import deepspeed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
                      WORLD_SIZE="1")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    deepspeed.init_distributed(dist_backend="gloo")


def run(rounds: int, steps: int, batch: int, length: int) -> dict:
    import deepspeed
    from transformers import LlamaConfig, LlamaForCausalLM

    _init_process_group()
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(**SHAPE, max_position_embeddings=256)).train()
    ids = torch.randint(3, SHAPE["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    plain = copy.deepcopy(base)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-5)

    def plain_step() -> None:
        batch_nll(plain(**inputs).logits, ids).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    variants = {"plain": plain_step}
    for stage in (0, 2, 3):
        cfg = deepspeed_config(TrainConfig(zero_stage=stage, micro_batch_size=batch, grad_accum=1, lr=1e-5,
                                           warmup_steps=1), "fp32", 1, total_steps=10**6)
        engine, *_ = deepspeed.initialize(model=copy.deepcopy(base), config=cfg)

        def ds_step(engine=engine) -> None:
            loss = batch_nll(engine(**inputs).logits, ids)
            engine.backward(loss)
            engine.step()

        variants[f"zero{stage}"] = ds_step

    tokens = batch * length * steps
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds + 1):
        for name, step in variants.items():
            started = time.perf_counter()
            for _ in range(steps):
                step()
            if r:  # round 0 warms up
                rates[name].append(tokens / (time.perf_counter() - started))
    out = {"parameters": sum(p.numel() for p in base.parameters()), "tokens_per_s": rates,
           "median_tokens_per_s": {k: statistics.median(v) for k, v in rates.items()},
           "ratio_to_plain": {k: statistics.median(a / b for a, b in zip(v, rates["plain"]))
                              for k, v in rates.items() if k != "plain"}}
    for k, v in out["median_tokens_per_s"].items():
        print(f"{k:6s} {v:9.0f} tokens/s  ratio {out['ratio_to_plain'].get(k, 1.0):.3f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--out", default="benchmarks/results/step_throughput.json")
    args = p.parse_args()
    figures = run(args.rounds, args.steps, args.batch, args.length)
    write_result(args.out, {"benchmark": "step_throughput", "machine": machine(),
                            "settings": {"rounds": args.rounds, "steps": args.steps, "batch": args.batch,
                                         "length": args.length, "dtype": "fp32", "workers": 1, "model": SHAPE},
                            "results": figures})


if __name__ == "__main__":
    main()
