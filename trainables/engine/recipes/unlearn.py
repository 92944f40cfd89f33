"""The unlearning recipe: a trial's base method + CLReg on forget/retain batches, once per seed.

Read top to bottom: `run` tokenises the data and loads the reference model once (kept by a warm slot for the
trials after it: `Resident`), then trains each unfinished seed
(`train_seed`: model, engine, objective, resume; epochs; checkpoint and report after each; save, evaluate) and
writes its outcome. One micro-step is `objective(collector(batches))`: the objective (`build_objective`) says which
forwards it needs, the collector runs them, the objective turns their outputs into the loss.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from trainables.attacks.protocol import read_reference, run_attacks, score_against_reference, write_attack
from trainables.config import TrialConfig
from trainables.data.formatting import Encoded, collate, encode
from trainables.data.idk import answer_for_row, idk_answers
from trainables.data.loading import load_benchmark
from trainables.data.schema import Benchmark, require_paraphrases
from trainables.engine.checkpoints import restore_state, write_outcome
from trainables.engine.forward import Batches, ForwardCollector
from trainables.engine.job import SetupClock, WorkerJob, WorkerPlace
from trainables.engine.run import TrainingRun
from trainables.engine.schedule import Layout, epoch_permutation, micro_batch, view_generator
from trainables.engine.sessions import Session
from trainables.engine.training import (
    Diverged,
    EpochSums,
    all_mean,
    build_engine,
    check_finite,
    reference_model,
    to_device,
)
from trainables.model.loading import num_layers
from trainables.model.trainable import train_only
from trainables.objectives import LossTerms, Objective, build_objective, resolve_method
from trainables.report_keys import DIVERGED, TRIAL_COMPLETE, finished_outcome, seed_dir


@dataclass
class UnlearnData:
    """Tokenised training sets of a trial: forget, retain, the forget set's paraphrases (CLReg's paraphrase
    positives) and its preferred answers (DPO's) when the trial trains with them."""

    forget: list[Encoded]
    retain: list[Encoded]
    paraphrase: list[Encoded] | None = None
    alternate: list[Encoded] | None = None


def tokenised_data(cfg: TrialConfig, tokenizer, bench: Benchmark) -> UnlearnData:
    """The trial's benchmark, tokenised once per run and shared by its seeds.

    Raises:
        DataError: when CLReg trains on paraphrase positives and a forget row has no paraphrase, or DPO's
            `data.idk_file` cannot be read.
    """
    n = cfg.data.max_length
    paraphrase = alternate = None
    wants_paraphrase, wants_alternate = data_variant(cfg)
    if wants_paraphrase:
        require_paraphrases(bench)
        paraphrase = [encode(tokenizer, e, n, answer=e.paraphrased_answer) for e in bench.forget]
    if wants_alternate:
        answers = idk_answers(cfg.data.idk_file)
        alternate = [encode(tokenizer, e, n, answer=answer_for_row(answers, i)) for i, e in enumerate(bench.forget)]
    return UnlearnData(forget=[encode(tokenizer, e, n) for e in bench.forget],
                       retain=[encode(tokenizer, e, n) for e in bench.retain], paraphrase=paraphrase,
                       alternate=alternate)


def data_variant(cfg: TrialConfig) -> tuple[bool, bool]:
    """Which optional sets `tokenised_data` builds for `cfg`: paraphrase positives, preferred answers."""
    paraphrase = cfg.clreg.active and cfg.clreg.positives == "paraphrase"
    return paraphrase, resolve_method(cfg.method).spec.reads_alternate


@dataclass
class _Shared:
    """What every seed of a run shares: the job, its session and worker place, tokenizer, benchmark (the attacks
    evaluate its rows), its tokenised data, reference model."""

    job: WorkerJob
    session: Session
    place: WorkerPlace
    tokenizer: object
    bench: Benchmark
    data: UnlearnData
    ref: object | None


def run(job: WorkerJob, cfg: TrialConfig, session: Session, tokenizer, clock: SetupClock) -> None:
    """Train and evaluate the trial, once or (with `job.seeds`) once per unfinished seed, and write the outcomes.

    The seeds share the worker processes, imports, tokenizer, tokenised data and reference model: a Ray Train
    run's own start and end cost more than a tiny trial's training (benchmarks/trial_overhead.py), so one run per
    seed would pay them once per seed. A seed whose outcome file says it finished is skipped, so a restarted run
    (a worker fault, a resumed sweep) trains only what is left; the checkpoint carries its seed.
    """
    place, resident = session.place, session.resident
    data_key = cfg.data.model_dump_json()
    bench = resident.get(("benchmark", data_key, cfg.prepare.cache_dir),
                         lambda: load_benchmark(cfg.data, cfg.prepare.cache_dir))
    data = resident.get(("tokenised", job.model_dir, data_key, *data_variant(cfg)),
                        lambda: tokenised_data(cfg, tokenizer, bench))
    clock.lap("data")
    # Loaded once for every seed, before any seed's model and objective exist: the method alone decides the need
    # (`ResolvedMethod.needs_ref`, which the objective's `needs` split by batch).
    ref = None
    if resolve_method(cfg.method).needs_ref:
        ref = resident.get(("reference", job.model_dir, cfg.model.model_dump_json(), cfg.train.zero_stage),
                           lambda: reference_model(job.model_dir, cfg, place))
    clock.lap("reference")
    shared = _Shared(job, session, place, tokenizer, bench, data, ref)
    checkpoint = session.latest_checkpoint()
    out = Path(job.output_dir)
    if not job.seeds:
        final = train_seed(shared, cfg, out, checkpoint)
        write_outcome({**final, **clock.seconds}, out, place.rank, worker_started_at=clock.started_at)
        return
    for seed in unfinished_seeds(job, place.rank):
        seed_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        final = train_seed(shared, seed_cfg, seed_dir(out, seed), checkpoint,
                           report_seed=seed if len(job.seeds) > 1 else None)
        if final.get(DIVERGED):
            write_outcome({**final, "seed": seed}, out, place.rank)
            return
        write_outcome(final, seed_dir(out, seed), place.rank)
        del final
        gc.collect()  # the seed's engine and model, before the next seed builds its own
    write_outcome({TRIAL_COMPLETE: 1, "seeds_trained": len(job.seeds), **clock.seconds}, out, place.rank,
                  worker_started_at=clock.started_at)


def unfinished_seeds(job: WorkerJob, rank: int) -> list[int]:
    """The seeds of `job` whose outcome file does not say they finished.

    Rank 0 wrote those files, so rank 0 reads them and tells the others: a rank on another node could see a stale
    copy of the shared directory, train a different set of seeds and hang the run's collectives.
    """
    chosen = [[s for s in job.seeds if finished_outcome(seed_dir(job.output_dir, s)) is None] if rank == 0 else None]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def train_seed(shared: _Shared, cfg: TrialConfig, out_dir: Path, checkpoint, report_seed: int | None = None) -> dict:
    """Train seed `cfg.train.seed`, checkpoint and report each epoch, save and evaluate into `out_dir`.

    `checkpoint` (the run's newest) is resumed from only when it holds this seed. Returns the final metrics, or the
    divergence outcome when the loss became non-finite (no checkpoint, no evaluation).
    """
    clock = SetupClock()
    t, place = cfg.train, shared.place
    torch.manual_seed(t.seed)
    model = shared.session.resident.trainable_model(shared.job.model_dir, cfg.model)
    objective = build_objective(cfg, num_layers(model))
    train_only(model, objective.method.trainable)
    clock.lap("model")
    layout = Layout(t.micro_batch_size, t.grad_accum, place.world)
    steps_per_epoch = layout.steps_per_epoch(len(shared.data.forget))
    engine = build_engine(model, cfg, place.world, t.lr, t.micro_batch_size, steps_per_epoch * t.epochs)
    clock.lap("engine")
    state = restore_state(engine, checkpoint, {"seed": t.seed, "epoch": 0, **objective.state_dict(), "history": []})
    objective.load_state_dict(state)
    clock.lap("restore")

    epochs = UnlearnEpochs(cfg, place, engine, objective, ForwardCollector(engine, engine.module, objective.needs,
                                                                           shared.ref),
                           shared.data, layout, shared.tokenizer.pad_token_id)
    run = TrainingRun(shared.job, cfg, shared.session, shared.tokenizer, engine, out_dir, epochs=t.epochs,
                      checkpoint_every=1, explain_missing=True, report_seed=report_seed)
    resumed_from_epoch, started = state["epoch"], time.perf_counter()
    for epoch in range(state["epoch"], t.epochs):
        try:
            metrics = epochs.train_epoch(epoch)
        except Diverged as diverged:
            return diverged.outcome()
        state.update(objective.state_dict())
        run.end_epoch(state, metrics)
    final = run.finish(state, started, resumed_from_epoch, clock)
    if cfg.attack.when == "final":
        del engine, model, epochs, run  # the attacks load their own copies of the final model
        gc.collect()
        final.update(attack_final_model(shared, cfg, out_dir, final))
    return final


def attack_final_model(shared: _Shared, cfg: TrialConfig, out_dir: Path, final: dict) -> dict:
    """`attack.when: final`: the attacks on the seed's saved final model (which they never overwrite), scored
    against the oracle's and target's figures (`job.attack_reference`); rank 0's metrics, also in `ATTACK_FILE`."""
    own = run_attacks(out_dir / "final_model", cfg, shared.place, shared.tokenizer, shared.bench, out_dir, final)
    if shared.place.rank != 0:
        return {}
    path = shared.job.attack_reference
    reference = read_reference(path) if path else None
    scores, reasons = score_against_reference(own, reference, cfg.attack.metric)
    for name, reason in sorted(reasons.items()):
        print(f"attack: {name} missing: {reason}", flush=True)
    metrics = {**own, **scores}
    write_attack(metrics, out_dir, shared.place.rank)
    return metrics


@dataclass
class UnlearnEpochs:
    """One seed's training epochs: which examples each micro-step takes, its forwards, loss and optimizer step."""

    cfg: TrialConfig
    place: WorkerPlace
    engine: object
    objective: Objective
    collector: ForwardCollector
    data: UnlearnData
    layout: Layout
    pad: int

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (0-based); its metrics, averaged over every micro-batch of every worker.

        Raises:
            Diverged: on every rank at the same micro-step, when the loss became non-finite on any.
        """
        started = time.perf_counter()
        seed, sums = self.cfg.train.seed, EpochSums()
        perm_f = epoch_permutation(len(self.data.forget), seed, epoch)
        perm_r = epoch_permutation(len(self.data.retain), seed + 1, epoch)
        for step in range(self.layout.steps_per_epoch(len(self.data.forget))):
            retain_losses = []
            for a in range(self.layout.grad_accum):
                u = self.layout.micro_index(step, self.place.rank, a)
                terms = self.micro_step(self.batches(perm_f, perm_r, u), view_generator(seed, epoch, u), epoch, step)
                sums.add(terms.values())
                if terms.retain is not None:
                    retain_losses.append(terms.retain.item())
            if self.objective.updates_dual:
                self.objective.dual_step(all_mean(statistics.fmean(retain_losses), self.place.device))
        return {**sums.all_reduced_means(self.place.device), "epoch": epoch + 1,
                "epoch_seconds": time.perf_counter() - started, "lr": self.engine.get_lr()[0],
                **self.objective.epoch_metrics()}

    def micro_step(self, batches: Batches, gen: torch.Generator, epoch: int, step: int) -> LossTerms:
        """Forwards, loss, backward and (at the accumulation boundary) the optimizer step of one micro-batch."""
        terms = self.objective(self.collector(batches, gen))
        check_finite(terms.total, self.place.device, epoch, step, self.cfg.train.lr)
        self.engine.backward(terms.total)
        self.engine.step()
        return terms

    def batches(self, perm_f: list[int], perm_r: list[int], u: int) -> Batches:
        """Micro-batch `u`'s forget rows, the same rows' paraphrases and preferred answers, and retain rows, on this
        worker's device."""
        m, d = self.layout.micro_batch, self.data
        rows = micro_batch(perm_f, u, m)

        def on_device(encoded: list[Encoded], idx: list[int]) -> dict[str, torch.Tensor]:
            return to_device(collate([encoded[i] for i in idx], self.pad), self.place.device)

        needs = self.objective.needs
        return Batches(
            forget=on_device(d.forget, rows),
            retain=on_device(d.retain, micro_batch(perm_r, u, m)) if needs.retain else None,
            paraphrase=on_device(d.paraphrase, rows) if needs.forget_view == "paraphrase" else None,
            alternate=on_device(d.alternate, rows) if needs.alternate else None,
        )
