"""CLReg overhead: step time of base method + CLReg over the base method alone (benchmarks issue, item 2).

One training step of a trial (the trial's objective, `trainables.objectives.build_objective`, over the forwards its
collector runs, `trainables.engine.forward.ForwardCollector`: forget and retain batches, base loss, CLReg term; then
backward and an AdamW step) in one process on random-weight Llama models built from a config. Three variants,
interleaved round by round so that a noisy shared machine slows all alike:

- `base`: the base method alone (CLReg off);
- `clreg`: base + CLReg at Last-1 with the dropout view computed as shipped, by re-running only the target layer on
  its captured, dropped-out input;
- `naive`: the same loss with the view computed by a second full forward pass (dropout on the target layer's input
  through a forward pre-hook), the straightforward implementation the shipped one replaces.

Ratios are taken per round (clreg/base, naive/base) and the median over rounds is reported.

    python -m benchmarks.clreg_overhead [--rounds 15] [--out benchmarks/results/clreg_overhead.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from benchmarks.common import machine, write_result
from trainables.config import TrialConfig
from trainables.engine.forward import Batches, ForwardCollector
from trainables.engine.schedule import view_generator
from trainables.model.layers import hidden_state_index, mean_pool
from trainables.model.loading import decoder_parts
from trainables.objectives import Objective, build_objective, dropout_view

MODELS = {
    # the tiny preset's shape (trainables.config.TinyModelConfig)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4, vocab_size=1024),
    # a wider Llama-shaped model (about 60 M parameters)
    "wide": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                 vocab_size=8192),
}


def _naive_view(module, layer: int, batch: dict[str, torch.Tensor], p: float, gen: torch.Generator) -> torch.Tensor:
    """The positive view by a second full forward pass of `batch` with dropout on the target layer's input."""
    layers, _ = decoder_parts(module)

    def drop(_mod, args, kwargs):
        if args:
            return (dropout_view(args[0], p, gen), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": dropout_view(kwargs["hidden_states"], p, gen)}

    handle = layers[layer].register_forward_pre_hook(drop, with_kwargs=True)
    try:
        out = module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                     use_cache=False)
    finally:
        handle.remove()
    return out.hidden_states[hidden_state_index(layer)]


def _batch(vocab: int, batch: int, length: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, vocab, (batch, length), generator=gen)
    labels = ids.clone()
    labels[:, : length // 2] = -100  # loss on the answer half, as in the real data
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _step_seconds(variant: str, model, ref, objectives: dict[str, Objective], forget, retain, gen) -> float:
    """One timed step; `naive` makes the forget view (the only one by default) by `_naive_view` instead."""
    objective = objectives["base" if variant == "base" else "clreg"]
    needs = objective.needs
    if variant == "naive":
        needs = dataclasses.replace(needs, forget_view=None)
    collector = ForwardCollector(model, model, needs, ref)
    opt = model._bench_opt
    started = time.perf_counter()
    out = collector(Batches(forget, retain), gen)
    if variant == "naive":
        view = _naive_view(model, needs.layer, forget, needs.dropout, gen)
        out.z_forget_pos = mean_pool(view, forget["attention_mask"])
    objective(out).total.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def run(rounds: int, batch: int, length: int) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for model_name, shape in MODELS.items():
        for method_name in ("simnpo", "npo"):
            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=256)).train()
            model._bench_opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
            depth = shape["num_hidden_layers"]
            objectives = {
                "base": build_objective(TrialConfig.model_validate(
                    {"method": {"name": method_name}, "clreg": {"enabled": False}}), depth),
                "clreg": build_objective(TrialConfig.model_validate(
                    {"method": {"name": method_name}, "clreg": {"layer": "last-1"}}), depth),
            }
            ref = copy.deepcopy(model).eval() if objectives["base"].method.needs_ref else None
            gen = torch.Generator().manual_seed(0)
            forget = _batch(shape["vocab_size"], batch, length, gen)
            retain = _batch(shape["vocab_size"], batch, length, gen)
            times: dict[str, list[float]] = {"base": [], "clreg": [], "naive": []}
            for r in range(rounds + 1):
                for variant in times:
                    t = _step_seconds(variant, model, ref, objectives, forget, retain, view_generator(0, 0, r))
                    if r:  # round 0 warms up allocator and kernels
                        times[variant].append(t)
            key = f"{model_name}/{method_name}"
            results[key] = {
                "parameters": sum(p.numel() for p in model.parameters()),
                "step_seconds": times,
                "median_step_seconds": {v: statistics.median(ts) for v, ts in times.items()},
                "clreg_over_base": statistics.median(c / b for c, b in zip(times["clreg"], times["base"])),
                "naive_over_base": statistics.median(n / b for n, b in zip(times["naive"], times["base"])),
            }
            print(f"{key:14s} base {results[key]['median_step_seconds']['base'] * 1e3:8.1f} ms   "
                  f"clreg x{results[key]['clreg_over_base']:.3f}   naive x{results[key]['naive_over_base']:.3f}",
                  flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results/clreg_overhead.json")
    args = p.parse_args()
    figures = run(args.rounds, args.batch, args.length)
    write_result(args.out, {"benchmark": "clreg_overhead", "machine": machine(),
                            "settings": {"rounds": args.rounds, "batch": args.batch, "length": args.length,
                                         "layer": "last-1", "dropout": 0.1}, "results": figures})


if __name__ == "__main__":
    main()
