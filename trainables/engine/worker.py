"""The entry point every worker of a run runs: common set-up, then the job's recipe.

`train_worker` (Ray Train's, a cold run) imports DeepSpeed, reads the job and finds its place in the worker group;
`run_job` (also a warm slot's, `trainables.engine.slot_worker`) loads the tokenizer, then hands over to the recipe
of `job.task`: `recipes.unlearn` (a trial: base method + CLReg, once per seed),
`recipes.finetune` (`prepare`'s target and oracle models) or `recipes.attack` (the oracle's and target's figures
under the trials' relearning attack). A run's final result is the outcome file rank 0 writes
(`trainables.report_keys.OUTCOME_FILE`); per-epoch reports and checkpoints go through the run's session
(`trainables.engine.sessions`).
"""

from __future__ import annotations

import logging
import os

import torch

from trainables.engine.job import SetupClock, WorkerJob, WorkerPlace
from trainables.engine.recipes import attack, finetune, unlearn
from trainables.engine.resident import Resident
from trainables.engine.sessions import RayTrainSession, Session
from trainables.report_keys import VERBOSE_ENV

RECIPES = {"unlearn": unlearn.run, "finetune": finetune.run, "attack": attack.run}


def train_worker(job_dict: dict) -> None:
    """Ray Train entry point (`train_loop_per_worker`): set up, then run the recipe of `job.task`."""
    clock = SetupClock()
    quiet_library_logs()
    import deepspeed  # noqa: F401  (imported here, timed as the "import" phase, not inside the first engine build)

    clock.lap("import")
    job = WorkerJob(**job_dict)
    run_job(job, RayTrainSession(WorkerPlace.current(job.trial), Resident()), clock)


def run_job(job: WorkerJob, session: Session, clock: SetupClock) -> None:
    """The tokenizer, then the recipe of `job.task`, reporting through `session`."""
    cfg = job.trial
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    tokenizer = session.resident.tokenizer(job.model_dir, cfg.model.trust_remote_code)
    RECIPES[job.task](job, cfg, session, tokenizer, clock)


def verbose() -> bool:
    """Whether the command that started this run asked for every library's info logs (`--verbose`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_library_logs() -> None:
    """The worker's root logger at WARNING unless `verbose()`.

    Ray Train configures it at INFO, and its own info logs reach it: "Reporting training result N:
    TrainingReport(...)", once per epoch, comes from a logger named after its file path, which the run's
    `LoggingConfig(log_level)` (filtering `ray.train.*` only) does not reach; rouge_score's "Using default
    tokenizer." too. The reports themselves are Tune's and MLflow's metrics.
    """
    if not verbose():
        logging.getLogger().setLevel(logging.WARNING)
