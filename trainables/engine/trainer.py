"""Building the Ray Train `TorchTrainer` that runs one trial's workers (Ray Train V2 pattern).

The same builder serves `clreg-sweep run` (called on the driver) and the sweep's Tune function trainable (called
inside a Tune trial, with `TuneReportCallback` forwarding rank 0's reports to Tune).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from trainables.config import TrialConfig
from trainables.engine.worker import WorkerJob, train_worker

# Quiet, deterministic worker processes: DeepSpeed picks its CPU accelerator without probing for CUDA, and
# tokenizers does not fork-warn inside Ray workers.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def build_trainer(job: WorkerJob, cfg: TrialConfig, storage_path: str, name: str, callbacks: list | None = None):
    """A `TorchTrainer` for `job`.

    Args:
        job: What the workers do (task, start model, output directory).
        cfg: The validated trial config (scaling, failures).
        storage_path: Where Ray Train persists checkpoints (shared storage on a multi-node cluster).
        name: Deterministic run name (from the trial id), so a restarted trial finds its own checkpoints.
        callbacks: Ray Train callbacks, e.g. `TuneReportCallback()` inside a Tune trial.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

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
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            worker_runtime_env={"env_vars": {**WORKER_ENV, **_accelerator_env(use_gpu)}},
        ),
    )


def _accelerator_env(use_gpu: bool) -> dict[str, str]:
    if use_gpu:
        return {}
    return {"DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}
