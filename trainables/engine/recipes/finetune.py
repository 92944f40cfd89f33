"""The fine-tuning recipe: `prepare`'s target (forget + retain) and oracle (retain only) models, plain answer NLL.

Runs as a Ray Train run like a trial, so both scale the same way on a cluster: `run` tokenises the split, builds
the model and engine, resumes, trains `prepare.epochs` epochs (a checkpoint every `CHECKPOINT_EVERY` and after the
last), saves and evaluates the model and writes the outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.config import TrialConfig
from trainables.data.formatting import Encoded, collate, encode
from trainables.data.loading import load_benchmark
from trainables.data.schema import Benchmark, Example
from trainables.engine.checkpoints import restore_state, write_outcome
from trainables.engine.job import SetupClock, WorkerJob, WorkerPlace
from trainables.engine.run import TrainingRun
from trainables.engine.schedule import Layout, epoch_permutation, micro_batch
from trainables.engine.sessions import Session
from trainables.engine.training import Diverged, EpochSums, build_engine, check_finite, to_device
from trainables.model.tiny import TINY_PRESET
from trainables.objectives import batch_nll

# A long fine-tuning checkpoints less often than a trial's few epochs: each checkpoint writes the optimizer state.
CHECKPOINT_EVERY = 5


def finetune_extra(bench: Benchmark, cfg: TrialConfig) -> list[Example]:
    """What `prepare` trains target and oracle on besides forget/retain.

    `bench.extra_train` (the synthetic benchmark's invented facts), or for a model built from scratch
    (`tiny-llama`) on data without them, the real-authors and world-facts eval sets: a stand-in for the
    pretraining that taught a real model those facts, so its utility on them is not zero by construction. Utility
    on those sets then measures recall of trained facts, not general knowledge.
    """
    if bench.extra_train or cfg.model.name_or_path != TINY_PRESET:
        return bench.extra_train
    return bench.eval_sets.get("real_authors", []) + bench.eval_sets.get("world_facts", [])


def training_split(cfg: TrialConfig, split: str, tokenizer) -> list[Encoded]:
    """The tokenised rows `split` ("target": forget + retain + extra, "oracle": retain + extra) trains on."""
    bench = load_benchmark(cfg.data, cfg.prepare.cache_dir)
    rows = bench.retain + finetune_extra(bench, cfg)
    if split == "target":
        rows = bench.forget + rows
    return [encode(tokenizer, e, cfg.data.max_length) for e in rows]


def run(job: WorkerJob, cfg: TrialConfig, session: Session, tokenizer, clock: SetupClock) -> None:
    """Fine-tune `job.model_dir` on `job.finetune_split` into `job.output_dir` and write the outcome there."""
    place = session.place
    p, out = cfg.prepare, Path(job.output_dir)
    rows = training_split(cfg, job.finetune_split, tokenizer)
    clock.lap("data")
    clock.lap("reference")  # none: the phase is reported for every run alike
    torch.manual_seed(cfg.train.seed)
    model = session.resident.trainable_model(job.model_dir, cfg.model)
    clock.lap("model")
    layout = Layout(p.micro_batch_size, cfg.train.grad_accum, place.world)
    engine = build_engine(model, cfg, place.world, p.lr, p.micro_batch_size,
                          layout.steps_per_epoch(len(rows)) * p.epochs)
    clock.lap("engine")
    state = restore_state(engine, session.latest_checkpoint(), {"seed": cfg.train.seed, "epoch": 0, "history": []})
    clock.lap("restore")

    epochs = FinetuneEpochs(cfg, place, engine, rows, layout, tokenizer.pad_token_id)
    training = TrainingRun(job, cfg, session, tokenizer, engine, out, epochs=p.epochs,
                           checkpoint_every=CHECKPOINT_EVERY, explain_missing=False)
    resumed_from_epoch, started = state["epoch"], time.perf_counter()
    try:
        for epoch in range(state["epoch"], p.epochs):
            training.end_epoch(state, epochs.train_epoch(epoch))
    except Diverged as diverged:
        final = {**diverged.outcome(), **clock.seconds}
    else:
        final = training.finish(state, started, resumed_from_epoch, clock)
    write_outcome(final, out, place.rank, worker_started_at=clock.started_at)


@dataclass
class FinetuneEpochs:
    """The fine-tuning epochs: each step's rows, their NLL, backward and optimizer step."""

    cfg: TrialConfig
    place: WorkerPlace
    engine: object
    rows: list[Encoded]
    layout: Layout
    pad: int

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (0-based); its mean loss over every micro-batch of every worker, lr and time.

        Raises:
            Diverged: on every rank at the same micro-step, when the loss became non-finite on any.
        """
        started, sums = time.perf_counter(), EpochSums()
        perm = epoch_permutation(len(self.rows), self.cfg.train.seed, epoch)
        for step in range(self.layout.steps_per_epoch(len(self.rows))):
            for a in range(self.layout.grad_accum):
                idx = micro_batch(perm, self.layout.micro_index(step, self.place.rank, a), self.layout.micro_batch)
                batch = to_device(collate([self.rows[i] for i in idx], self.pad), self.place.device)
                logits = self.engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = batch_nll(logits, batch["labels"])
                check_finite(loss, self.place.device, epoch, step, self.cfg.prepare.lr)
                self.engine.backward(loss)
                self.engine.step()
                sums.add({"loss": loss.item()})
        return {**sums.all_reduced_means(self.place.device), "epoch": epoch + 1,
                "epoch_seconds": time.perf_counter() - started, "lr": self.engine.get_lr()[0]}
