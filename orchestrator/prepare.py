"""`prepare`: the TOFU protocol's target and oracle models, fine-tuned once and cached.

The target is fine-tuned on forget + retain (+ extra training facts), the oracle on retain (+ extra) only. Both
runs are Ray Train + DeepSpeed jobs like any trial; the base model is scored on the forget and retain sets first,
on the driver, so the report shows what fine-tuning taught. The result lives under a key that hashes everything that
determines it (data, model, fine-tuning settings), is built in a temporary directory and renamed into place when
complete, so a crash never leaves a cache entry that looks finished and a second call returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from trainables.config import TrialConfig
from trainables.data.loading import benchmark_fingerprint, load_benchmark
from trainables.data.schema import Benchmark
from trainables.engine.trainer import build_trainer, fit_to_end
from trainables.engine.worker import WorkerJob
from trainables.evaluation import evaluate_saved_model, load_eval, oracle_reference_from_dir
from trainables.model.loading import check_model_source
from trainables.model.tiny import TINY_PRESET, build_tiny_llama

REPORT_FILE = "prepare_report.json"
ORACLE_REFERENCE_FILE = "oracle_reference.json"
# What the report shows of the model before fine-tuning: does it already know the forget set?
BEFORE_METRICS = ("forget_prob", "forget_rouge", "retain_prob", "retain_rouge")


@dataclass(frozen=True)
class Prepared:
    """Paths of a prepared (or user-supplied) target model and its oracle reference."""

    target_dir: str
    oracle_reference: str | None
    report: dict


def prepare_key(cfg: TrialConfig, fingerprint: str) -> str:
    """Hash of everything that determines the prepared models (not the trial's unlearning settings)."""
    material = {
        "data": cfg.data.model_dump(mode="json"),
        "benchmark": fingerprint,
        "model": cfg.model.model_dump(mode="json", exclude={"lora"}),
        "prepare": cfg.prepare.model_dump(mode="json", exclude={"cache_dir", "enabled", "oracle_path"}),
        "train": cfg.train.model_dump(mode="json", include={"seed", "grad_accum", "weight_decay", "warmup_steps"}),
        "version": 2,  # bump when code changes what prepare trains (2: lr schedule no longer idles 2 steps)
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(cfg: TrialConfig, log=print, bench: Benchmark | None = None) -> Prepared:
    """Return the cached target/oracle for `cfg`, building them first if needed (Ray must be initialised).

    `bench` is `cfg.data`'s benchmark when the caller has already loaded it (preflight does), else it is loaded.
    """
    if not cfg.prepare.enabled:
        check_model_source(cfg.model.name_or_path)
        ref = None
        if cfg.prepare.oracle_path:
            ref_file = Path(cfg.prepare.oracle_path) / ORACLE_REFERENCE_FILE
            ref = str(ref_file) if ref_file.is_file() else None
        return Prepared(cfg.model.name_or_path, ref, {})

    if cfg.model.name_or_path != TINY_PRESET:
        check_model_source(cfg.model.name_or_path)
    bench = bench if bench is not None else load_benchmark(cfg.data, cfg.prepare.cache_dir)
    key = prepare_key(cfg, benchmark_fingerprint(bench))
    final = Path(cfg.prepare.cache_dir).resolve() / "prepared" / key
    if (final / REPORT_FILE).is_file():
        log(f"prepare: cache hit {final}")
        return _prepared(final)

    build = final.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    started = time.perf_counter()
    base = cfg.model.name_or_path
    if base == TINY_PRESET:
        texts = [t for e in bench.forget + bench.retain + bench.holdout + bench.extra_train
                 + [x for s in bench.eval_sets.values() for x in s]
                 for t in (e.question, e.answer, e.paraphrased_answer or "", *e.perturbed_answer)]
        base = str(build_tiny_llama(cfg.model.tiny, texts, build / "base", max_positions=2 * cfg.data.max_length))
        log(f"prepare: built {TINY_PRESET} ({cfg.model.tiny.num_layers} layers) with a tokenizer trained on "
            f"{len(texts)} benchmark strings")
    report: dict = {"key": key, "base_model": cfg.model.name_or_path, "benchmark": bench.name,
                    "base": evaluate_saved_model(base, cfg, metrics=list(BEFORE_METRICS))}
    for split in ("target", "oracle"):
        log(f"prepare: fine-tuning the {split} model ({cfg.prepare.epochs} epochs) ...")
        job = WorkerJob(trial=cfg.model_dump(mode="json", by_alias=True), task="finetune", model_dir=base,
                        output_dir=str(build / split), finetune_split=split, evaluate=True)
        outcome = fit_to_end(build_trainer(job, cfg, storage_path=str(build / "ray"), name=f"prepare-{split}"),
                             build / split)
        report[split] = {k: v for k, v in load_eval(build / split).aggregates.items()
                         if isinstance(v, (int, float))}
        report[split]["train_loss_last_epoch"] = outcome.get("train/loss")
    _write_oracle_reference(build)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (build / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
    shutil.rmtree(build / "ray", ignore_errors=True)
    try:
        build.rename(final)
    except OSError:  # another process finished the same key first: keep theirs
        shutil.rmtree(build, ignore_errors=True)
    log(f"prepare: done in {report['seconds']} s -> {final}")
    return _prepared(final)


def _prepared(root: Path) -> Prepared:
    ref = root / ORACLE_REFERENCE_FILE
    return Prepared(str(root / "target" / "final_model"), str(ref) if ref.is_file() else None,
                    json.loads((root / REPORT_FILE).read_text()))


def _write_oracle_reference(build: Path) -> None:
    """Cache what forget quality and PrivLeak need from the oracle: its per-item truth ratios and MIA AUC."""
    ref = oracle_reference_from_dir(build / "oracle")
    (build / ORACLE_REFERENCE_FILE).write_text(ref.to_json())
