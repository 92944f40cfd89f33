"""The end of each epoch and of a training run, the same for both recipes: record, evaluate when due, report and
checkpoint; then save the final model, evaluate it and assemble the run's final metrics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from trainables.config import TrialConfig
from trainables.engine.job import SetupClock, WorkerJob
from trainables.engine.saving import save_model
from trainables.engine.sessions import Session
from trainables.report_keys import TRIAL_COMPLETE, epoch_model_dir, seed_key


@dataclass
class TrainingRun:
    """One training run's engine and where its results go.

    Attributes:
        job: the Ray Train run's job (evaluate or not, oracle reference).
        cfg: the run's config (the seed's, in a repeated-seed run).
        session: where the run reports and checkpoints (Ray Train or a warm slot), this worker's place.
        tokenizer: saved with the model.
        engine: the DeepSpeed engine being trained.
        out_dir: where the final model, its evaluation and the outcome go (`seed-<s>/` for one seed of several).
        epochs: how many epochs the run trains.
        checkpoint_every: checkpoint after every this many epochs, and after the last.
        explain_missing: print why an evaluated metric is missing (trials do; `prepare`'s models are evaluated
            before the oracle reference exists, their oracle metrics are scored later as the sweep's reference
            points, orchestrator/references.py, so for them the reasons are noise).
        report_seed: in a run of several seeds, the seed whose per-epoch reports these are: their metrics are
            reported as `seed_key(seed, name)` so the seeds' curves do not collide (`epoch` stays as is); None:
            plain names (what ASHA reads).
    """

    job: WorkerJob
    cfg: TrialConfig
    session: Session
    tokenizer: object
    engine: object
    out_dir: Path
    epochs: int
    checkpoint_every: int
    explain_missing: bool
    report_seed: int | None = None

    def end_epoch(self, state: dict, metrics: dict) -> None:
        """Record epoch `metrics["epoch"]` in `state`, evaluate mid-run when `eval.every` says, and report it (with a
        checkpoint when due: the checkpoint holds `state`)."""
        epoch = metrics["epoch"]
        state["epoch"] = epoch
        state["history"].append(metrics)  # the same dict: a mid-run evaluation below lands in the history too
        last = epoch == self.epochs
        every = self.cfg.eval.every
        if self.job.evaluate and every and epoch % every == 0 and not last:
            metrics.update(self.save_and_evaluate(final=False, epoch=epoch))
        if self.report_seed is not None:
            metrics = {k if k == "epoch" else seed_key(self.report_seed, k): v for k, v in metrics.items()}
        self.session.report(self.engine, state, metrics, checkpoint=last or epoch % self.checkpoint_every == 0)

    def finish(self, state: dict, training_started: float, resumed_from_epoch: int, clock: SetupClock) -> dict:
        """Save and evaluate the final model; the run's final metrics.

        The last epoch's training figures travel with them (a run's result is its outcome), plus the training wall
        time of this attempt (steps, mid-run evaluations, checkpoints) beside `eval_seconds`.
        """
        import ray

        final = {**(state["history"][-1] if state["history"] else {}), TRIAL_COMPLETE: 1, "epoch": state["epoch"],
                 "train_seconds": time.perf_counter() - training_started, "resumed_from_epoch": resumed_from_epoch,
                 "node_id": ray.get_runtime_context().get_node_id(), **clock.seconds}
        final.update(self.save_and_evaluate(final=True))
        return final

    def save_and_evaluate(self, final: bool, epoch: int | None = None) -> dict:
        """Save the model (final, or mid-run after `epoch`: kept as `epoch-<e>/` with `eval.keep_epoch_models`, else
        a temporary one) into `out_dir` and, when the job evaluates, evaluate it on rank 0; rank 0's numeric
        metrics. Every rank must call this."""
        out = self.out_dir
        if final:
            model_dir = out / "final_model"
        elif self.cfg.eval.keep_epoch_models:
            model_dir = epoch_model_dir(out, epoch)
        else:
            model_dir = out / "eval_model"
        rank = self.session.place.rank
        save_model(self.engine, self.tokenizer, model_dir, rank)
        metrics: dict = {}
        if rank == 0 and self.job.evaluate:
            from trainables.evaluation import evaluate_saved_model
            from trainables.metrics.evaluate import MISSING_REASONS_KEY, PARTIAL_SUFFIX

            started = time.perf_counter()
            aggregates = evaluate_saved_model(model_dir, self.cfg, oracle_path=self.job.oracle_reference,
                                              out_dir=out if final else None)
            metrics = {k: v for k, v in aggregates.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            metrics["eval_seconds"] = time.perf_counter() - started
            reasons = aggregates.get(MISSING_REASONS_KEY, {}) if self.explain_missing else {}
            for name, reason in sorted(reasons.items()):
                label = name if name.endswith(PARTIAL_SUFFIX) else f"{name} missing"
                print(f"eval{'' if final else ' (mid-run)'}: {label}: {reason}", flush=True)
        if dist.is_initialized():
            dist.barrier()
        return metrics
