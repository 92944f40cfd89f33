"""One rank of a warm slot: a long-lived process that runs trial after trial.

Why: a cold trial is a Ray Train run, which starts its worker processes, imports torch, DeepSpeed and Ray Train,
forms the process group, reads the tokenizer, data and models from disk, and tears it all down again: about 9 s of
Ray Train alone on a 2-core laptop before any set-up of ours (benchmarks/trial_overhead.py), and on a cluster the
model loads from shared storage grow with the model. A slot's workers pay that once; each trial then builds only
what must be new (model copy, optimizer, schedule, engine, RNG, LoRA adapters) and reads the rest from its
`Resident`.

The slot pool (`orchestrator.slots`) creates the `num_workers` ranks of a slot in one placement group, has rank 0
name an address (`address`), forms the process group once (`join`), then calls `run` on every rank for each
trial. A rank that raises or dies ends the slot: the pool kills the rest and a fresh slot resumes the trial from its
checkpoint (`SlotSession`).
"""

from __future__ import annotations

import gc
import os
import socket
from pathlib import Path

from trainables.engine.job import SetupClock, WorkerJob, WorkerPlace
from trainables.engine.resident import Resident
from trainables.engine.sessions import SlotSession, TrialCancelled
from trainables.engine.worker import quiet_library_logs, run_job
from trainables.report_keys import RUN_CANCELLED, RUN_FINISHED


class SlotWorker:
    """Rank `rank` of a slot of `world` ranks (a Ray actor: `ray.remote(SlotWorker)`), on a GPU when `use_gpu`."""

    def __init__(self, rank: int, world: int, use_gpu: bool) -> None:
        quiet_library_logs()
        import deepspeed  # noqa: F401  (imported once per slot: a cold run's "import" phase)

        self.rank, self.world, self.use_gpu = rank, world, use_gpu
        self.resident = Resident(keep=True)

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the process group: this node's address and a free port."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def join(self, host: str, port: int) -> None:
        """Join the slot's process group (gloo, or NCCL on GPUs); every rank calls it at once."""
        import torch
        import torch.distributed as dist

        os.environ.update({"MASTER_ADDR": host, "MASTER_PORT": str(port), "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world), "LOCAL_RANK": "0"})
        backend = "nccl" if self.use_gpu else "gloo"
        if self.use_gpu:
            torch.cuda.set_device(0)  # Ray gives each GPU actor its own device as cuda:0
        dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=self.rank, world_size=self.world)

    def run(self, job_dict: dict, pool, run_id: int) -> str:
        """Run one job (a trial) on this rank: `RUN_FINISHED`, or `RUN_CANCELLED` when the pool stopped it.

        What the job leaves (outputs, outcome file, checkpoints) is exactly what a cold run leaves; errors propagate
        to the pool, which ends the slot.
        """
        import torch

        clock = SetupClock()
        clock.lap("import")
        job = WorkerJob(**job_dict)
        device = torch.device("cuda", 0) if self.use_gpu and torch.cuda.is_available() else torch.device("cpu")
        session = SlotSession(WorkerPlace(self.rank, self.world, device), self.resident, Path(job.output_dir),
                              pool, run_id)
        try:
            run_job(job, session, clock)
            return RUN_FINISHED
        except TrialCancelled:
            return RUN_CANCELLED
        finally:
            gc.collect()  # the trial's engine and model, before the next trial builds its own
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def pid(self) -> int:
        return os.getpid()

    def rss(self) -> int:
        """This process's resident memory in bytes (the pool recycles a slot that grows too much)."""
        import psutil

        return psutil.Process().memory_info().rss

