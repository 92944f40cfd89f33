"""GPU throughput, MFU and memory: a Llama-shaped model of about 1B parameters under DeepSpeed ZeRO-2 and ZeRO-3,
bf16, SimNPO with and without CLReg (benchmarks issue, items 5 and 6).

What one trial worker does per optimizer step, on random weights built from a config (nothing is downloaded): the
trial's own micro step (its objective, `trainables.objectives.build_objective`, over the forwards of
`trainables.engine.forward.ForwardCollector`: a forget and a retain batch, SimNPO loss, and with CLReg on the Last-1
dropout view and contrastive term), `engine.backward`, `engine.step`, with the engine built as a trial builds it
(`trainables.engine.training.build_engine`: the trial's DeepSpeed config and lr schedule).

Each ZeRO stage runs in its own spawned process (one rank, NCCL on a GPU, gloo on CPU), so its peak allocated
memory is its own; inside it `off` (SimNPO alone) and `on` (SimNPO + CLReg) alternate block by block, round by
round (round 0 warms up), and medians over rounds are reported.

Figures:
- tokens/s per GPU: forget + retain tokens through forward and backward per second (one rank = one GPU);
- MFU: model FLOPs per second over the GPU's peak dense bf16 FLOP/s. Model FLOPs per token are
  `6 * N + 12 * layers * hidden * length` (the PaLM appendix-B count: N is every parameter that multiplies, i.e.
  all but the input embedding, and the attention term is not halved for causality). CLReg's extra work (one layer
  re-run, the pooled contrastive loss) is not counted as model FLOPs, so with CLReg on, MFU shows its cost;
- `cuda_peak_allocated_mib` per stage and variant (`torch.cuda.max_memory_allocated`, reset before each block).

    python -m benchmarks.gpu_throughput [--shape llama-1b] [--stages 2 3] [--rounds 5] [--steps 10]
    python -m benchmarks.gpu_throughput --shape tiny --device cpu   # a smoke run of the same code on CPU

Peak FLOP/s come from `PEAK_BF16_TFLOPS` by the GPU's name (dense, no sparsity), or `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import traceback

from benchmarks.common import free_port, machine, peak_rss_mib, write_result

SHAPES = {
    # TinyLlama-1.1B's shape: 1.10 B parameters with a 32k vocabulary
    "llama-1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, vocab_size=32000),
    # for a CPU smoke run of this script
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512),
}
# Dense bf16 tensor-core peak of the SXM parts, TFLOP/s, from the vendors' data sheets (matched in the GPU's name).
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0, "L4": 121.0}
VARIANTS = ("off", "on")


def model_flops_per_token(parameters: int, embedding: int, shape: dict, length: int) -> float:
    """Training FLOPs per token of a decoder (forward + backward = 3 forwards): 6 per multiplying parameter plus
    the attention score and value products, 12 * layers * hidden * length (PaLM, appendix B)."""
    return 6 * (parameters - embedding) + 12 * shape["num_hidden_layers"] * shape["hidden_size"] * length


def peak_tflops(device_name: str | None, override: float | None) -> float | None:
    """The GPU's dense bf16 peak: `override`, else the first `PEAK_BF16_TFLOPS` key in its name, else None."""
    if override:
        return override
    if not device_name:
        return None
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def _stage_worker(stage: int, shape_name: str, device_kind: str, batch: int, length: int, steps: int, rounds: int,
                  conn) -> None:
    """One ZeRO stage in this process: build the engine, time blocks of steps for both variants, send figures."""
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
                          WORLD_SIZE="1")
        if device_kind == "cpu":
            os.environ["DS_ACCELERATOR"] = "cpu"
        conn.send(("done", _run_stage(stage, SHAPES[shape_name], device_kind, batch, length, steps, rounds)))
    except BaseException:
        conn.send(("error", f"ZeRO-{stage}:\n{traceback.format_exc()}"))
        raise


def _run_stage(stage: int, shape: dict, device_kind: str, batch: int, length: int, steps: int, rounds: int) -> dict:
    import logging
    import warnings

    import deepspeed
    import torch
    from deepspeed.utils import logger
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainables.config import TrialConfig
    from trainables.engine.forward import Batches, ForwardCollector
    from trainables.engine.schedule import view_generator
    from trainables.engine.training import build_engine
    from trainables.objectives import build_objective

    logger.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")  # once per collective
    cuda = device_kind == "cuda"
    device = torch.device("cuda:0" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    settings = {"model": {"dtype": "bf16"}, "train": {"zero_stage": stage, "micro_batch_size": batch, "lr": 1e-5}}
    configs = {v: TrialConfig.model_validate({**settings, "method": {"name": "simnpo"},
                                             "clreg": {"layer": "last-1", "enabled": v == "on"}}) for v in VARIANTS}
    torch.manual_seed(0)
    with device:
        model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=length)).train()
    parameters = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    engine = build_engine(model, configs["on"], 1, 1e-5, batch, total_steps=10**6)
    objectives = {v: build_objective(c, shape["num_hidden_layers"]) for v, c in configs.items()}
    collectors = {v: ForwardCollector(engine, engine.module, o.needs) for v, o in objectives.items()}
    gen = torch.Generator().manual_seed(0)

    def batch_of_tokens() -> dict:
        ids = torch.randint(3, shape["vocab_size"], (batch, length), generator=gen).to(device)
        labels = ids.clone()
        labels[:, : length // 2] = -100  # loss on the answer half, as in the real data
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    forget, retain = batch_of_tokens(), batch_of_tokens()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    peak_mib: dict[str, float] = {v: 0.0 for v in VARIANTS}
    micro = 0
    for r in range(rounds + 1):
        for variant in VARIANTS:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            sync()
            started = time.perf_counter()
            for _ in range(steps):
                out = collectors[variant](Batches(forget, retain), view_generator(0, 0, micro))
                engine.backward(objectives[variant](out).total)
                engine.step()
                micro += 1
            sync()
            if r:  # round 0 warms up kernels and the allocator
                seconds[variant].append(time.perf_counter() - started)
                if cuda:
                    peak_mib[variant] = max(peak_mib[variant], torch.cuda.max_memory_allocated(device) / 2**20)
    tokens_per_block = 2 * batch * length * steps  # forget + retain
    rates = {v: [tokens_per_block / s for s in ts] for v, ts in seconds.items()}
    return {
        "stage": stage, "parameters": parameters, "embedding_parameters": embedding,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "block_seconds": seconds, "tokens_per_s": rates,
        "median_tokens_per_s": {v: statistics.median(x) for v, x in rates.items()},
        "clreg_step_time_ratio": statistics.median(a / b for a, b in zip(seconds["on"], seconds["off"])),
        "cuda_peak_allocated_mib": peak_mib if cuda else None,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_stage(stage: int, args: argparse.Namespace) -> dict:
    """ZeRO-`stage` in a fresh spawned process (its own CUDA context and peak memory); its figures or its error."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_stage_worker, args=(stage, args.shape, args.device, args.batch, args.length,
                                                   args.steps, args.rounds, there), daemon=True)
    proc.start()
    while not here.poll(5.0):
        if not proc.is_alive():
            raise RuntimeError(f"ZeRO-{stage} worker died (exit code {proc.exitcode})")
    kind, payload = here.recv()
    proc.join(120)
    if kind != "done":
        raise RuntimeError(payload)
    return payload


def add_mfu(res: dict, shape: dict, length: int, peak: float | None) -> None:
    """Model FLOPs utilisation of each variant's median tokens/s (None without a known peak)."""
    per_token = model_flops_per_token(res["parameters"], res["embedding_parameters"], shape, length)
    res["model_flops_per_token"] = per_token
    res["mfu"] = ({v: t * per_token / (peak * 1e12) for v, t in res["median_tokens_per_s"].items()}
                  if peak else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    p.add_argument("--stages", type=int, nargs="+", default=[2, 3], choices=[0, 1, 2, 3])
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--batch", type=int, default=8, help="sequences per forget (and retain) micro-batch")
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per timed block")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    p.add_argument("--out", default="benchmarks/results/gpu_throughput.json")
    args = p.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cpu":
            print("no GPU: running on CPU (MFU is not computed; use --shape tiny for a quick run)", flush=True)
    started = time.perf_counter()
    shape = SHAPES[args.shape]
    results = {}
    for stage in args.stages:
        res = run_stage(stage, args)
        add_mfu(res, shape, args.length, peak_tflops(res["device"] if args.device == "cuda" else None,
                                                     args.peak_tflops))
        results[f"zero{stage}"] = res
        for v in VARIANTS:
            mfu = f"{res['mfu'][v]:.1%}" if res["mfu"] else "n/a"
            mem = f"{res['cuda_peak_allocated_mib'][v]:.0f} MiB" if res["cuda_peak_allocated_mib"] else "n/a"
            print(f"ZeRO-{stage} CLReg {v:3s}: {res['median_tokens_per_s'][v]:10.0f} tokens/s per GPU   MFU {mfu:>6}"
                  f"   peak allocated {mem}", flush=True)
        print(f"ZeRO-{stage} CLReg on/off step time x{res['clreg_step_time_ratio']:.3f}", flush=True)
    write_result(args.out, {
        "benchmark": "gpu_throughput", "machine": machine(),
        "settings": {"shape": args.shape, "model": shape, "batch": args.batch, "length": args.length,
                     "steps": args.steps, "rounds": args.rounds, "dtype": "bf16", "method": "simnpo",
                     "clreg_layer": "last-1", "device": args.device, "peak_tflops": args.peak_tflops},
        "wall_seconds": time.perf_counter() - started, "results": results,
    })


if __name__ == "__main__":
    main()
