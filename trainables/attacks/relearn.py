"""The relearning attack's training: a few optimizer steps of answer NLL on the attack rows, from a saved model.

Suppression hides knowledge behind a shallow change that a few steps of fine-tuning on part of the forget set
undo for the rest of it (Hu et al., arXiv 2406.13356; Deeb & Roger, arXiv 2410.08827); erased knowledge has to be
learned again row by row. The loop is the fine-tuning recipe's (`FinetuneEpochs`) over a fixed number of steps,
on the trial's engine (ZeRO stage, workers, dtype), so the attack scales like the trial and runs wherever it ran,
but with its own optimisation settings (`attack_train`), so every trial, the target and the oracle face one attack.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch

from trainables.config import TrainConfig, TrialConfig
from trainables.data.formatting import Encoded, collate, encode
from trainables.data.schema import Benchmark
from trainables.engine.job import WorkerPlace
from trainables.engine.saving import save_model
from trainables.engine.schedule import Layout, epoch_permutation
from trainables.engine.training import build_engine, check_finite, to_device
from trainables.model.loading import load_causal_lm
from trainables.objectives import batch_nll

ATTACK_MODEL = "attack_model"


def attack_train(cfg: TrialConfig) -> TrainConfig:
    """The engine settings the attack trains with: the trial's ZeRO stage and workers, no gradient accumulation,
    warm-up or weight decay. A trial's searched `train.*` must not change the attack, or R would compare a trial
    and the oracle under different attacks (the cached reference is keyed on the stage and workers only)."""
    return cfg.train.model_copy(update={"grad_accum": 1, "warmup_steps": 0, "weight_decay": 0.0})


def relearn_lr(cfg: TrialConfig) -> float:
    """`attack.relearn.lr`, or `prepare.lr`: the rate the target learned its forget set at."""
    return cfg.attack.relearn.lr if cfg.attack.relearn.lr is not None else cfg.prepare.lr


def relearn_rows(cfg: TrialConfig, tokenizer, bench: Benchmark, split_a: list[int]) -> list[Encoded]:
    """The rows the attack trains on, tokenised.

    `attack.relearn.data == "forget"`: the forget rows of half A. `"retain"` (the benign variant): the first
    len(A) retain rows, as much data as the attack would see, none of it about the forget set, so whatever comes
    back on B came back without being shown anything related to it.
    """
    if cfg.attack.relearn.data == "forget":
        examples = [bench.forget[i] for i in split_a]
    else:
        examples = bench.retain[:len(split_a)]
    return [encode(tokenizer, e, cfg.data.max_length) for e in examples]


def stream_batch(num_rows: int, seed: int, micro_index: int, size: int) -> list[int]:
    """Row indices of micro-batch `micro_index` of an endless stream of passes over the rows, pass `k` in the order
    `epoch_permutation(num_rows, seed, k)`: a number of steps longer than one pass cycles through fresh orders."""
    start = micro_index * size
    first, last = start // num_rows, (start + size - 1) // num_rows
    passes = {k: epoch_permutation(num_rows, seed, k) for k in range(first, last + 1)}
    return [passes[p // num_rows][p % num_rows] for p in range(start, start + size)]


def relearn(model_dir: str | Path, cfg: TrialConfig, place: WorkerPlace, tokenizer, rows: list[Encoded],
            out_dir: str | Path) -> Path:
    """Fine-tune a copy of `model_dir` on `rows` and save it to `out_dir/attack_model`; that path. Every rank must
    call it (the engine's collectives and `save_model`'s gather and barrier).

    `attack.relearn.steps` optimizer steps (None: one pass over `rows`) of answer NLL at `relearn_lr` with
    micro-batches of `attack.relearn.micro_batch_size` on `attack_train`'s engine, the lr decaying linearly.
    Seeded by `attack.relearn.split_seed`, so an attack is reproducible and the same for a trial, its target and
    its oracle. `model_dir` itself is only read.

    Raises:
        Diverged: on every rank, when the loss became non-finite on any.
    """
    a = cfg.attack.relearn
    if not rows:
        raise ValueError("the relearning attack has no rows to train on")
    lr, attack_cfg = relearn_lr(cfg), cfg.model_copy(update={"train": attack_train(cfg)})
    layout = Layout(a.micro_batch_size, 1, place.world)
    steps = a.steps if a.steps is not None else layout.steps_per_epoch(len(rows))
    torch.manual_seed(a.split_seed)
    model = load_causal_lm(str(model_dir), cfg.model, trainable=True)
    engine = build_engine(model, attack_cfg, place.world, lr, a.micro_batch_size, steps)
    engine.train()
    for step in range(steps):
        for acc in range(layout.grad_accum):
            idx = stream_batch(len(rows), a.split_seed, layout.micro_index(step, place.rank, acc), layout.micro_batch)
            batch = to_device(collate([rows[i] for i in idx], tokenizer.pad_token_id), place.device)
            logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = batch_nll(logits, batch["labels"])
            check_finite(loss, place.device, 0, step, lr)
            engine.backward(loss)
            engine.step()
    out = Path(out_dir) / ATTACK_MODEL
    save_model(engine, tokenizer, out, place.rank)
    del engine, model
    gc.collect()
    if place.device.type == "cuda":
        torch.cuda.empty_cache()
    return out
