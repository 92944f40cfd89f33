"""Building the Ray Train `TorchTrainer` that runs one trial's workers (Ray Train V2 pattern).

The same builder serves `clreg-sweep run` (called on the driver) and the sweep's Tune function trainable (called
inside a Tune trial, with `TuneReportCallback` forwarding rank 0's per-epoch reports to Tune). Either way the run's
result is read from the outcome file rank 0 writes (`fit_to_end`), which is also where a diverged run is told
apart from a finished one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from trainables.engine.job import WorkerJob
from trainables.engine.outcome import clear_outcome, read_outcome
from trainables.engine.worker import train_worker, verbose

# Quiet, deterministic worker processes: DeepSpeed picks its CPU accelerator without probing for CUDA, and
# tokenizers does not fork-warn inside Ray workers.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def build_trainer(job: WorkerJob, storage_path: str, name: str, callbacks: list | None = None):
    """A `TorchTrainer` for `job`, scaled and retried as its trial config (`job.trial`) says.

    Args:
        job: What the workers do (trial config, task, start model, output directory).
        storage_path: Where Ray Train persists checkpoints (shared storage on a multi-node cluster).
        name: Deterministic run name (from the trial id), so a restarted trial finds its own checkpoints.
        callbacks: Ray Train callbacks, e.g. `TuneReportCallback()` inside a Tune trial.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg = job.trial
    use_gpu = cfg.train.gpus_per_worker > 0
    resources = {"CPU": cfg.train.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.train.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config=dataclasses.asdict(job),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()) if "://" not in storage_path else storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks or [],
            logging_config=ray.train.LoggingConfig(log_level="INFO" if verbose() else "WARNING"),
            worker_runtime_env={"env_vars": worker_env(use_gpu)},
        ),
    )


def fit_to_end(trainer, output_dir: str | Path) -> dict:
    """Run `trainer` (whose job writes to `output_dir`) and return rank 0's final metrics.

    Raises:
        The run's error when its workers failed more often than `train.max_failures` allows, and
        `NonFiniteLossError` when the loss diverged (reported by the workers instead of raised, so Ray Train does
        not retry a run that would diverge again).
    """
    clear_outcome(output_dir)
    fit_started = time.time()
    result = trainer.fit()
    fit_ended = time.time()
    if result.error:
        raise result.error
    return read_outcome(output_dir, fit_started, fit_ended)


def worker_env(use_gpu: bool) -> dict[str, str]:
    """The environment of a run's workers (cold or warm): `WORKER_ENV`, and DeepSpeed's CPU accelerator without
    GPUs."""
    if use_gpu:
        return dict(WORKER_ENV)
    return {**WORKER_ENV, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}
