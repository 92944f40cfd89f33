"""The function each Tune trial runs (`trial_driver`): it resolves the trial's config, writes its record, hands the
job to a warm slot or a Ray Train run of its own, and reports the outcome.

A module of its own with light imports: Tune starts a new actor process for many trials, and each imports the
module that defines the trial function before the trial begins. The sweep driver's module (`orchestrator.sweep`)
imports torch, transformers and MLflow (several seconds on a laptop), which the trial driver does not need.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.repeats import run_seeds
from orchestrator.trial_record import record_for, resolve_point, write_record
from trainables.engine.job import WorkerJob
from trainables.engine.outcome import NonFiniteLossError
from trainables.report_keys import DIVERGED, DIVERGENCE_REASON


def trial_driver(params: dict, *, base: dict, target_dir: str, oracle_reference: str | None,
                 attack_reference: str | None, trials_dir: str, repeat_seeds: list[int], num_layers: int,
                 slot_pool: str | None = None) -> None:
    """One Tune trial: the sampled `params` applied to `base`, run as a DeepSpeed job in a warm slot of the actor
    named `slot_pool` (`orchestrator.slots`), or as a Ray Train run of its own (None: cold).

    The trial's record (`trial_record.build_record`) is written to `trials/<id>/trial.json` before training. One
    run trains the trial's seeds (one, or a sampled space's `repeat_seeds`) one after the other, each into
    `trials/<id>/seed-<s>/`; rank 0's per-epoch reports reach Tune (relayed by `run_in_slot`, or Ray Train's
    `TuneReportCallback`), and the trial's final result, read from the seeds' outcome files
    (`orchestrator.repeats`), is reported once at the end.
    """
    from ray import tune


    trial_id = tune.get_context().get_trial_id()
    out = Path(trials_dir) / trial_id
    cfg = resolve_point(base, params, repeat_seeds)
    record = record_for(trial_id, cfg, params, repeat_seeds, num_layers)
    write_record(record, out)

    def fit(pending: list[int]) -> dict:
        job = WorkerJob(trial=cfg, task="unlearn", model_dir=target_dir, output_dir=str(out),
                        oracle_reference=oracle_reference, attack_reference=attack_reference, seeds=pending)
        if slot_pool:
            import ray

            from orchestrator.slots import run_in_slot

            return run_in_slot(ray.get_actor(slot_pool), job, cfg.train.max_failures, tune.report)
        from ray.tune.integration.ray_train import TuneReportCallback

        from trainables.engine.trainer import build_trainer, fit_to_end

        return fit_to_end(build_trainer(job, storage_path=str(out / "ray"), name=f"trial-{trial_id}",
                                        callbacks=[TuneReportCallback()]), out)

    try:
        final = run_seeds(record.seeds, out, fit)
    except NonFiniteLossError as diverged:
        # An outcome of the sampled point, not a fault: reported (Optuna FAIL, MLflow FAILED with the reason)
        # instead of raised, so Tune does not retry a trial that would diverge again.
        final = {DIVERGED: 1, DIVERGENCE_REASON: str(diverged)}
    tune.report(final)
