"""Step throughput and memory: tokens/s and peak RSS of one training step under DeepSpeed ZeRO-0/2/3 against plain
PyTorch (benchmarks issue, items 1 and 5).

The same random-weight Llama-shaped model, per-worker batch, dtype (fp32) and optimizer (AdamW) trained by
- `plain`: a plain `loss.backward(); opt.step()` loop, wrapped in `DistributedDataParallel` when there are several
  workers;
- `zero0`, `zero2`, `zero3`: DeepSpeed engines built from the trial's own DeepSpeed config
  (`trainables.engine.deepspeed_config`), data parallel over the workers;
with 1 worker and with 2 workers (processes on this machine, gloo, `torch.distributed`).

Every variant runs in its own fresh process(es), because peak RSS is per process: each worker reads
`getrusage(RUSAGE_SELF).ru_maxrss` at its end (the Python/torch/DeepSpeed baseline included) and its RSS after the
imports and the model (and engine) build, before the first step, so the training increment shows; on a GPU also
`torch.cuda.max_memory_allocated`. All variants of one worker count start together, wait idle, and are told to
run a block of steps one variant after the other, round by round (round 0 warms up), so a noisy shared machine slows
all alike; ratios to `plain` (same worker count) are taken per round and medians reported.

The driver process never imports torch before its workers start: a process started by fork+exec inherits its
parent's peak RSS on Linux (see `benchmarks.common.peak_rss_mib`); each worker records that inherited floor.

    python -m benchmarks.step_throughput [--workers 1 2] [--rounds 7] [--steps 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

from benchmarks.common import free_port, machine, peak_rss_mib, rss_mib, write_result

SHAPE = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8, vocab_size=8192)
VARIANTS = ("plain", "zero0", "zero2", "zero3")
READY_TIMEOUT_S = 1200.0  # imports and builds of all workers of a phase, concurrently, on a loaded 2-core machine
BLOCK_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process trains: variant, its place in the group, threads and batch shape."""

    variant: str
    rank: int
    world: int
    port: int
    threads: int  # 0: torch's default (one per core)
    batch: int
    length: int


# ---------------------------------------------------------------------------------------------------------------
# worker process


def _worker(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of one worker: build, report ready, run blocks of steps when told, report memory at the end.

    Errors go back to the driver as text, so a failed build stops the benchmark instead of hanging it.
    """
    try:
        entry_peak = peak_rss_mib()
        _environment(spec)
        import torch  # after the thread settings, before the first RSS mark
        import transformers  # noqa: F401

        if spec.variant != "plain":
            import deepspeed  # noqa: F401
        memory: dict[str, Any] = {"rank": spec.rank, "peak_rss_inherited_at_entry_mib": entry_peak,
                                  "rss_after_imports_mib": rss_mib()}
        step, device, params = _build(spec)
        memory.update(rss_before_first_step_mib=rss_mib(), peak_rss_before_first_step_mib=peak_rss_mib())
        conn.send(("ready", {"parameters": params, "threads": torch.get_num_threads(), "device": str(device)}))
        _serve(conn, step, device)
        memory["peak_rss_mib"] = peak_rss_mib()
        memory["training_increment_mib"] = memory["peak_rss_mib"] - memory["rss_before_first_step_mib"]
        memory["cuda_peak_allocated_mib"] = (torch.cuda.max_memory_allocated(device) / 2**20
                                             if device.type == "cuda" else None)
        conn.send(("done", memory))
        torch.distributed.destroy_process_group()
    except BaseException:
        conn.send(("error", f"{spec.variant} rank {spec.rank}:\n{traceback.format_exc()}"))
        raise


def _environment(spec: WorkerSpec) -> None:
    """Threads and the rendezvous of this worker's group, set before torch is imported (OpenMP reads them once)."""
    if spec.threads:
        os.environ.update(OMP_NUM_THREADS=str(spec.threads), MKL_NUM_THREADS=str(spec.threads))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(spec.port), RANK=str(spec.rank),
                      LOCAL_RANK=str(spec.rank), WORLD_SIZE=str(spec.world))


def _build(spec: WorkerSpec) -> tuple[Callable[[], None], Any, int]:
    """Process group, model (seeded: the same weights in every process), batch and the variant's step function."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if spec.threads:
        torch.set_num_threads(spec.threads)
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    device = torch.device(f"cuda:{spec.rank % torch.cuda.device_count()}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, max_position_embeddings=256)).train()
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(spec.rank)  # data parallel: every worker its own batch
    ids = torch.randint(3, SHAPE["vocab_size"], (spec.batch, spec.length), generator=gen).to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if spec.variant == "plain":
        torch.distributed.init_process_group(backend)
        return _plain_step(model.to(device), inputs, spec.world, device), device, params
    return _deepspeed_step(model, inputs, spec, backend), device, params


def _plain_step(model, inputs: dict, world: int, device) -> Callable[[], None]:
    """The reference: what a hand-written PyTorch loop does (DDP's bucketed all-reduce when data parallel)."""
    import torch

    from trainables.objectives import batch_nll

    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        batch_nll(model(**inputs).logits, inputs["input_ids"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _deepspeed_step(model, inputs: dict, spec: WorkerSpec, backend: str) -> Callable[[], None]:
    """A trial worker's step: the engine from the trial's DeepSpeed config, `engine.backward`, `engine.step`."""
    import logging

    import deepspeed
    from deepspeed.utils import logger

    from trainables.config import TrainConfig
    from trainables.engine.deepspeed_config import deepspeed_config, linear_schedule
    from trainables.objectives import batch_nll

    logger.setLevel(logging.ERROR)  # 8 workers printing configs and lr warnings would bury the figures
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    deepspeed.init_distributed(dist_backend=backend)
    stage = int(spec.variant.removeprefix("zero"))
    cfg = deepspeed_config(TrainConfig(zero_stage=stage, micro_batch_size=spec.batch, grad_accum=1, lr=1e-5),
                           "fp32", spec.world)
    engine, *_ = deepspeed.initialize(model=model, config=cfg, lr_scheduler=linear_schedule(0, 10**6))

    def step() -> None:
        loss = batch_nll(engine(**inputs).logits, inputs["input_ids"])
        engine.backward(loss)
        engine.step()

    return step


def _serve(conn: Connection, step: Callable[[], None], device) -> None:
    """Run a timed block of steps for every ("run", n) until ("stop",); the clock starts and ends at a barrier."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    while (msg := conn.recv())[0] == "run":
        torch.distributed.barrier()
        started = time.perf_counter()
        for _ in range(msg[1]):
            step()
        sync()
        torch.distributed.barrier()
        conn.send(("block", time.perf_counter() - started))


# ---------------------------------------------------------------------------------------------------------------
# driver


class Group:
    """The worker processes of one variant (one per rank) and the driver's pipes to them."""

    def __init__(self, ctx, variant: str, world: int, threads: int, batch: int, length: int) -> None:
        port = free_port()
        self.variant = variant
        self.procs, self.conns = [], []
        for rank in range(world):
            here, there = ctx.Pipe()
            spec = WorkerSpec(variant, rank, world, port, threads, batch, length)
            proc = ctx.Process(target=_worker, args=(spec, there), name=f"{variant}-{rank}", daemon=True)
            proc.start()
            self.procs.append(proc)
            self.conns.append(here)

    def gather(self, expected: str, timeout: float) -> list:
        """One message of kind `expected` from every rank; a worker's error or death raises instead of hanging."""
        return [_recv(proc, conn, expected, timeout) for proc, conn in zip(self.procs, self.conns)]

    def block(self, steps: int) -> list[float]:
        """Seconds each rank took for `steps` steps (the group's wall time is the slowest)."""
        for conn in self.conns:
            conn.send(("run", steps))
        return self.gather("block", BLOCK_TIMEOUT_S)

    def stop(self) -> list[dict]:
        """End the workers and return each one's memory figures."""
        for conn in self.conns:
            conn.send(("stop",))
        memory = self.gather("done", BLOCK_TIMEOUT_S)
        for proc in self.procs:
            proc.join(60)
        return memory

    def kill(self) -> None:
        """Terminate workers still alive (after an error elsewhere), by their own handles."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()


def _recv(proc, conn: Connection, expected: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(5.0):
        if not proc.is_alive():
            raise RuntimeError(f"worker {proc.name} died (exit code {proc.exitcode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {proc.name}: no {expected!r} within {timeout:.0f} s")
    kind, payload = conn.recv()
    if kind != expected:
        raise RuntimeError(f"worker {proc.name} sent {kind!r} instead of {expected!r}: {payload}")
    return payload


def run_phase(world: int, threads: int, rounds: int, steps: int, batch: int, length: int) -> dict:
    """All variants with `world` workers each, interleaved round by round; figures and memory per variant."""
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    groups: dict[str, Group] = {}
    try:
        for name in VARIANTS:
            groups[name] = Group(ctx, name, world, threads, batch, length)
        ready = {name: g.gather("ready", READY_TIMEOUT_S) for name, g in groups.items()}
        setup_s = time.perf_counter() - started
        seconds: dict[str, list[list[float]]] = {k: [] for k in groups}
        for r in range(rounds + 1):
            for name, group in groups.items():
                per_rank = group.block(steps)
                if r:  # round 0 warms up
                    seconds[name].append(per_rank)
            if r:
                print(f"  {world} worker(s), round {r}: " + "  ".join(
                    f"{k} {world * batch * length * steps / max(v[-1]):.0f}" for k, v in seconds.items()), flush=True)
        memory = {name: g.stop() for name, g in groups.items()}
    finally:
        for g in groups.values():
            g.kill()
    out = summarise(seconds, world, batch * length * steps)
    out.update(parameters=ready["plain"][0]["parameters"], threads_per_worker=ready["plain"][0]["threads"],
               device=ready["plain"][0]["device"], setup_seconds=setup_s, wall_seconds=time.perf_counter() - started,
               memory=memory,
               peak_rss_mib_per_worker={k: max(m["peak_rss_mib"] for m in v) for k, v in memory.items()},
               rss_before_first_step_mib_per_worker={k: max(m["rss_before_first_step_mib"] for m in v)
                                                     for k, v in memory.items()})
    return out


def summarise(seconds: dict[str, list[list[float]]], world: int, tokens_per_worker_block: int) -> dict:
    """Total and per-worker tokens/s per round (a block's time is its slowest rank's), medians, per-round ratios."""
    total = world * tokens_per_worker_block
    rates = {k: [total / max(per_rank) for per_rank in v] for k, v in seconds.items()}
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "workers": world,
        "block_seconds_per_rank": seconds,
        "tokens_per_s": rates,
        "median_tokens_per_s": median,
        "median_tokens_per_s_per_worker": {k: v / world for k, v in median.items()},
        "ratio_to_plain": {k: statistics.median(a / b for a, b in zip(v, rates["plain"]))
                           for k, v in rates.items() if k != "plain"},
    }


def print_table(results: dict[str, dict]) -> None:
    """The figures the README quotes, one line per worker count and variant."""
    print(f"{'workers':>7} {'variant':7} {'tokens/s':>9} {'per worker':>10} {'ratio':>6} {'RSS built':>10} "
          f"{'peak RSS':>9}  (MiB, per worker)")
    for res in results.values():
        for k, v in res["median_tokens_per_s"].items():
            print(f"{res['workers']:7d} {k:7s} {v:9.0f} {res['median_tokens_per_s_per_worker'][k]:10.0f} "
                  f"{res['ratio_to_plain'].get(k, 1.0):6.3f} {res['rss_before_first_step_mib_per_worker'][k]:10.0f} "
                  f"{res['peak_rss_mib_per_worker'][k]:9.0f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4, help="per worker")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads-single", type=int, default=0,
                   help="torch threads of a lone worker (0: torch's default, one per core, as measured so far)")
    p.add_argument("--threads-multi", type=int, default=1,
                   help="torch threads per worker with several workers (a trial's cpus_per_worker)")
    p.add_argument("--out", default="benchmarks/results/step_throughput.json")
    args = p.parse_args()
    started = time.perf_counter()
    results = {}
    for world in args.workers:
        threads = args.threads_single if world == 1 else args.threads_multi
        results[f"{world}_worker{'s' if world > 1 else ''}"] = run_phase(world, threads, args.rounds, args.steps,
                                                                         args.batch, args.length)
    wall = time.perf_counter() - started
    print_table(results)
    print(f"total wall time {wall:.0f} s", flush=True)
    write_result(args.out, {
        "benchmark": "step_throughput", "machine": machine(),
        "settings": {"rounds": args.rounds, "steps": args.steps, "batch_per_worker": args.batch,
                     "length": args.length, "dtype": "fp32", "optimizer": "AdamW lr 1e-5", "workers": args.workers,
                     "threads_single": args.threads_single, "threads_multi": args.threads_multi,
                     "backend": "gloo (CPU) / nccl (GPU)", "model": SHAPE},
        "notes": NOTES, "wall_seconds": wall, "results": results,
    })


NOTES = {
    "processes": "each variant and worker count in its own fresh spawned process(es), all of one worker count alive "
                 "at once but idle while another variant runs its block; a block starts and ends at a barrier and "
                 "counts as its slowest rank's time",
    "tokens_per_s": "total over all workers; per worker = total / workers; ratio_to_plain: per-round ratio to plain "
                    "PyTorch with the same worker count (plain = DDP with several workers), median over rounds",
    "peak_rss_mib": "getrusage(RUSAGE_SELF).ru_maxrss at the worker's end: includes the Python, torch, transformers "
                    "(and for zero* DeepSpeed) baseline and the full model each worker builds before DeepSpeed "
                    "partitions it; rss_after_imports_mib / rss_before_first_step_mib are the RSS at those points, "
                    "training_increment_mib = peak - rss_before_first_step; peak_rss_inherited_at_entry_mib is what "
                    "the spawned process inherited from the (torch-free) driver",
    "cuda_peak_allocated_mib": "torch.cuda.max_memory_allocated on a GPU; null on CPU",
    "differences": "plain has no gradient clipping or lr schedule; DeepSpeed runs the trial's config (clipping 1.0, "
                   "the linear lr schedule), as a trial does",
}


if __name__ == "__main__":
    main()
