"""The attack recipe: the attacks of `attack` on saved models, outside a trial's own run.

Two callers: the sweep's attack reference (the oracle and the target, relearned as every trial will be:
`orchestrator.attack_reference`) and a front attack (`attack.when: front`: the final models of the Pareto front's
trials, after the sweep). Runs as a Ray Train run like a trial, so the relearning trains with the trials' engine
settings on as many workers.
"""

from __future__ import annotations

from pathlib import Path

from trainables.attacks.protocol import run_attacks
from trainables.config import TrialConfig
from trainables.data.loading import load_benchmark
from trainables.engine.checkpoints import write_outcome
from trainables.engine.job import SetupClock, WorkerJob
from trainables.engine.sessions import Session
from trainables.report_keys import TRIAL_COMPLETE


def run(job: WorkerJob, cfg: TrialConfig, session: Session, tokenizer, clock: SetupClock) -> None:
    """Attack each model of `job.attack_models` ({name: saved model folder}) as `cfg.attack` says; rank 0 writes
    each model's figures to the outcome file under its name."""
    place = session.place
    bench = load_benchmark(cfg.data, cfg.prepare.cache_dir)
    clock.lap("data")
    out = Path(job.output_dir)
    figures = {name: run_attacks(model_dir, cfg, place, tokenizer, bench, out / name, None)
               for name, model_dir in job.attack_models.items()}
    write_outcome({TRIAL_COMPLETE: 1, **figures, **clock.seconds}, out, place.rank,
                  worker_started_at=clock.started_at)
