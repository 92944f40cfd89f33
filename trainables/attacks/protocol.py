"""The attack protocol of one model (README "Attacks"): relearn, quantize, measure the forget metrics again.

`run_attacks` runs inside a Ray Train worker after a trial's evaluation (or on a target or oracle model, whose
figures are the reference the trial is scored against, `score_against_reference`). Every rank calls it, since
relearning trains on all of them; rank 0 evaluates, like the trial's own evaluation, and the others wait at a
barrier. Every attacked model is a copy: relearning writes `attack_model` beside the trial's outputs and removes
it once measured, quantization works on a model loaded in memory; `model_dir` is only read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist

from trainables.atomic_files import write_json_atomic
from trainables.attacks.quantize import quantize_model_
from trainables.attacks.relearn import relearn, relearn_rows
from trainables.attacks.scores import quantization_stability, recovery, relearn_agreement, robustness
from trainables.attacks.split import attack_split
from trainables.config import TrialConfig
from trainables.data.schema import Benchmark
from trainables.engine.job import WorkerPlace
from trainables.engine.training import Diverged
from trainables.metrics.evaluate import evaluate
from trainables.model.layers import resolve_layer
from trainables.model.loading import load_causal_lm, num_layers
from trainables.report_keys import (
    ATTACK_FILE,
    ATTACK_TIMINGS,
    QUANT_Q,
    RELEARN_R,
    RELEARN_RECOVERY,
    ROBUSTNESS,
    quant_metric,
    relearn_metric,
)

RELEARN_SECONDS, QUANTIZE_SECONDS = ATTACK_TIMINGS
NO_REFERENCE = "no oracle model was attacked (prepare.enabled false or an oracle log only)"
NOT_RELEARNED = "this model's relearning attack was not measured (attack.relearn.enabled false, or it diverged)"


def run_attacks(model_dir: str | Path, cfg: TrialConfig, place: WorkerPlace, tokenizer, bench: Benchmark,
                out_dir: str | Path, before_full: dict | None = None) -> dict[str, float]:
    """Attack the model saved in `model_dir` as `cfg.attack` says; rank 0's attack metrics, {} on the other ranks.

    Relearning (`attack.relearn.enabled`): the forget set is split into A and B (`attack_split`); the
    `attack.metrics` on B before (`relearn/<m>_before`) and after (`relearn/<m>`) relearning on A's rows
    (`relearn_rows`). Quantization (`attack.quantize.enabled`): the metrics on the whole forget set after each bit
    width (`quant<bits>/<m>`), and `quant/Q` of `attack.metric` at the lowest one against `before_full` (the
    model's own final evaluation; evaluated here when it lacks a metric). Each attack's wall time is reported
    (`attack/relearn_seconds`, `attack/quantize_seconds`). Missing metric values are left out.

    Args:
        model_dir: the saved model to attack (a trial's `final_model`, a target, an oracle); never written.
        cfg: the trial's config: attack settings, engine settings of the relearning, eval settings.
        place: this worker's rank, world and device.
        tokenizer: the model's tokenizer.
        bench: the benchmark (its forget set is split and measured).
        out_dir: where `attack_model` is written while relearning; it is removed afterwards.
        before_full: the model's evaluation on the whole forget set, metric name -> value, if already made.
    """
    metrics: dict[str, float] = {}
    if cfg.attack.relearn.enabled:
        metrics.update(relearn_attack(model_dir, cfg, place, tokenizer, bench, Path(out_dir)))
    if cfg.attack.quantize.enabled:
        metrics.update(quantize_attack(model_dir, cfg, place, tokenizer, bench, before_full))
    return metrics if place.rank == 0 else {}


def relearn_attack(model_dir: str | Path, cfg: TrialConfig, place: WorkerPlace, tokenizer, bench: Benchmark,
                   out_dir: Path) -> dict[str, float]:
    """Half B's metrics before and after relearning on half A, and the attack's wall time (rank 0's; every rank
    calls it). A relearning whose loss became non-finite is reported on the console and leaves only the "before"
    values: `score_against_reference` then says why R and recovery are missing."""
    started = time.perf_counter()
    a = cfg.attack.relearn
    split_a, split_b = attack_split(len(bench.forget), a.split_seed)
    half_b = dataclasses.replace(bench, forget=[bench.forget[i] for i in split_b])
    metrics: dict[str, float] = {}
    if place.rank == 0:
        before = evaluate_model(load_for_eval(model_dir, cfg), cfg, tokenizer, half_b)
        metrics.update({relearn_metric(m, before=True): v for m, v in before.items()})
    _barrier()
    try:
        attacked = relearn(model_dir, cfg, place, tokenizer, relearn_rows(cfg, tokenizer, bench, split_a), out_dir)
    except Diverged as diverged:
        if place.rank == 0:
            print(f"attack: relearning diverged: {diverged.reason}", flush=True)
    else:
        if place.rank == 0:
            after = evaluate_model(load_for_eval(attacked, cfg), cfg, tokenizer, half_b)
            metrics.update({relearn_metric(m): v for m, v in after.items()})
            shutil.rmtree(attacked, ignore_errors=True)
        _barrier()
    metrics[RELEARN_SECONDS] = time.perf_counter() - started
    return metrics


def quantize_attack(model_dir: str | Path, cfg: TrialConfig, place: WorkerPlace, tokenizer, bench: Benchmark,
                    before_full: dict | None) -> dict[str, float]:
    """The forget set's metrics after each bit width, `quant/Q` and the wall time (rank 0 works, the others wait)."""
    metrics: dict[str, float] = {}
    if place.rank == 0:
        started = time.perf_counter()
        q, names = cfg.attack.quantize, cfg.attack.metrics
        before = {m: before_full[m] for m in names if _finite(before_full.get(m))} if before_full else {}
        if set(before) != set(names):
            before = evaluate_model(load_for_eval(model_dir, cfg), cfg, tokenizer, bench)
        for bits in sorted(set(q.bits), reverse=True):
            if bits >= 16:  # `quantize_model_` would change nothing: the model as it is was just measured
                after = dict(before)
            else:
                model = load_for_eval(model_dir, cfg)
                quantize_model_(model, bits, q.group_size)
                after = evaluate_model(model, cfg, tokenizer, bench)
                del model
            metrics.update({quant_metric(bits, m): v for m, v in after.items()})
        stability = quantization_stability(before.get(cfg.attack.metric),
                                           metrics.get(quant_metric(min(q.bits), cfg.attack.metric)))
        if stability is not None:
            metrics[QUANT_Q] = stability
        metrics[QUANTIZE_SECONDS] = time.perf_counter() - started
    _barrier()
    return metrics


def load_for_eval(model_dir: str | Path, cfg: TrialConfig):
    """The saved model in eval mode on the evaluation device (a GPU when the trial asks for one and there is one,
    like `trainables.evaluation`); LoRA adapters merged, so quantization rounds the weights actually used."""
    model = load_causal_lm(str(model_dir), cfg.model, trainable=False)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if cfg.train.gpus_per_worker > 0 and torch.cuda.is_available():
        model = model.cuda()
    return model.eval()


def evaluate_model(model, cfg: TrialConfig, tokenizer, bench: Benchmark) -> dict[str, float]:
    """`attack.metrics` of `model` on `bench` (measured at the trial's target layer); the finite values only."""
    result = evaluate(model, tokenizer, bench, cfg.eval, resolve_layer(cfg.clreg.layer, num_layers(model)),
                      cfg.data.max_length, metrics=list(cfg.attack.metrics))
    return {k: float(v) for k, v in result.aggregates.items() if _finite(v)}


def score_against_reference(own: dict, reference: dict | None, metric: str) -> tuple[dict, dict[str, str]]:
    """R, recovery and robustness of a model from its own attack figures and its references'.

    Args:
        own: the model's `run_attacks` metrics.
        reference: {"oracle": {..}, "target": {..}}, each the `run_attacks` metrics of that model under the same
            attack (only `relearn/<metric>_before` and, for the oracle, `relearn/<metric>` are read); None when no
            oracle was attacked.
        metric: the attack metric (`attack.metric`).

    Returns:
        (scores, reasons): `relearn/R` (`relearn_agreement` of the model's and the oracle's change on B),
        `relearn/recovery` (`recovery` between the target's and the oracle's level on B) and
        `relearn/robustness` (harmonic mean of R and `quant/Q`, of whichever exists), for those that could be
        computed; a reason for each of the others.
    """
    before_key, after_key = relearn_metric(metric, before=True), relearn_metric(metric)
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    if not (_finite(own.get(before_key)) and _finite(own.get(after_key))):
        reasons[RELEARN_R] = reasons[RELEARN_RECOVERY] = NOT_RELEARNED
    elif reference is None or not reference.get("oracle"):
        reasons[RELEARN_R] = reasons[RELEARN_RECOVERY] = NO_REFERENCE
    else:
        oracle, target = reference["oracle"], reference.get("target") or {}
        d_unl = own[after_key] - own[before_key]
        d_ret = (oracle[after_key] - oracle[before_key]
                 if _finite(oracle.get(after_key)) and _finite(oracle.get(before_key)) else None)
        agreement = relearn_agreement(d_unl, d_ret)
        if agreement is None:
            reasons[RELEARN_R] = f"the oracle's {before_key} / {after_key} are missing"
        else:
            scores[RELEARN_R] = agreement
        value, why = recovery(own[before_key], own[after_key], target.get(before_key), oracle.get(before_key))
        if value is None:
            reasons[RELEARN_RECOVERY] = why
        else:
            scores[RELEARN_RECOVERY] = value
    combined = robustness([scores.get(RELEARN_R), own.get(QUANT_Q)])
    if combined is None:
        reasons[ROBUSTNESS] = f"neither {RELEARN_R} nor {QUANT_Q} was measured"
    else:
        scores[ROBUSTNESS] = combined
    return scores, reasons


def write_attack(metrics: dict, out_dir: str | Path, rank: int) -> None:
    """Rank 0 writes `metrics` to `out_dir/attack.json` atomically: a resumed sweep reads it instead of attacking
    the model twice."""
    if rank == 0:
        write_json_atomic(Path(out_dir) / ATTACK_FILE, metrics)


def read_attack(out_dir: str | Path) -> dict | None:
    """The attack metrics `write_attack` wrote to `out_dir`, or None (no file, or not a JSON object)."""
    try:
        data = json.loads((Path(out_dir) / ATTACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_reference(path: str | Path) -> dict[str, dict]:
    """The attack reference at `path` (`orchestrator.attack_reference` builds it): {"oracle": figures, "target":
    figures}, the relearning attack's metrics of each model."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
