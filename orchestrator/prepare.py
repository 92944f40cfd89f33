"""`prepare`: the TOFU protocol's target and oracle models, fine-tuned once and cached.

The target is fine-tuned on forget + retain (+ extra training facts), the oracle on retain (+ extra) only. Both
runs are Ray Train + DeepSpeed jobs like any trial; the base model is scored on the forget and retain sets first,
on the driver, so the report shows what fine-tuning taught. The result lives under a key that hashes everything that
determines it (data, model, fine-tuning settings), is built in a temporary directory and renamed into place when
complete, so a crash never leaves a cache entry that looks finished and a second call returns at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from trainables.atomic_files import write_bytes_atomic
from trainables.config import TrialConfig
from trainables.data.loading import benchmark_fingerprint, load_benchmark
from trainables.data.schema import Benchmark
from trainables.engine.recipes.finetune import finetune_extra
from trainables.engine.trainer import build_trainer, fit_to_end
from trainables.engine.worker import WorkerJob
from trainables.evaluation import evaluate_saved_model, load_eval, oracle_reference_from_dir
from trainables.metrics.oracle_logs import expected_log_items, read_oracle_logs
from trainables.model.loading import check_model_source
from trainables.model.tiny import TINY_PRESET, build_tiny_llama, tokenizer_texts

REPORT_FILE = "prepare_report.json"
ORACLE_REFERENCE_FILE = "oracle_reference.json"
ORACLE_LOGS_DIR = "oracle-logs"  # under prepare.cache_dir: references read from open-unlearning logs
# What the report shows of the model before fine-tuning: does it already know the forget set?
BEFORE_METRICS = ("forget_prob", "forget_rouge", "retain_prob", "retain_rouge")
# `knowledge_warnings`: how much better than the oracle the target must know its forget set, and the least utility.
FORGET_PROB_RATIO = 1.5
FORGET_PROB_GAP = 0.05
MIN_UTILITY = 0.05


@dataclass(frozen=True)
class Prepared:
    """Paths of a prepared (or user-supplied) target model and its oracle reference."""

    target_dir: str
    oracle_reference: str | None
    report: dict


def prepare_key(cfg: TrialConfig, fingerprint: str) -> str:
    """Hash of everything that determines the prepared models and their evaluations (not the trial's unlearning
    settings): the oracle's forget truth ratios and min-k AUC depend on `eval.definitions` and the generation
    length."""
    material = {
        "data": cfg.data.model_dump(mode="json", exclude={"max_truncated"}),  # a preflight limit, trains nothing
        "benchmark": fingerprint,
        "model": cfg.model.model_dump(mode="json", exclude={"lora"}),
        "prepare": cfg.prepare.model_dump(mode="json",
                                          exclude={"cache_dir", "enabled", "oracle_path", "oracle_logs"}),
        "train": cfg.train.model_dump(mode="json", include={"seed", "grad_accum", "weight_decay", "warmup_steps"}),
        "eval": cfg.eval.model_dump(mode="json", include={"definitions", "max_new_tokens"}),
        "version": 3,  # bump when code changes what prepare trains or how it evaluates the prepared models
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(cfg: TrialConfig, log=print, bench: Benchmark | None = None) -> Prepared:
    """Return the cached target/oracle for `cfg`, building them first if needed (Ray must be initialised).

    `bench` is `cfg.data`'s benchmark when the caller has already loaded it (preflight does), else it is loaded.
    With `prepare.oracle_logs` the oracle reference is the released log's (`cache_oracle_log`), also when an
    oracle was trained: the log is what forget quality and PrivLeak are meant to compare against.
    """
    prepared = _prepare_models(cfg, log, bench)
    if not cfg.prepare.oracle_logs:
        return prepared
    bench = bench if bench is not None else load_benchmark(cfg.data, cfg.prepare.cache_dir)
    ref = cache_oracle_log(cfg.prepare.oracle_logs, cfg.prepare.cache_dir, expected_log_items(bench))
    log(f"prepare: oracle reference from the open-unlearning log {cfg.prepare.oracle_logs}")
    return replace(prepared, oracle_reference=ref)


def cache_oracle_log(log_path: str | Path, cache_dir: str | Path, expected_items: int | None) -> str:
    """The `OracleReference` JSON of an open-unlearning log, written to `cache_dir/oracle-logs/<sha256>.json`.

    The log is validated first (`read_oracle_logs`), so a bad one leaves nothing behind; the file is keyed by the
    log's content (an edited log is read again) and written atomically (concurrent sweeps never see half a file).
    Returns its absolute path, which workers on other machines read from the shared cache.
    """
    reference = read_oracle_logs(log_path, expected_items).reference
    digest = hashlib.sha256(Path(log_path).read_bytes()).hexdigest()
    out = Path(cache_dir).resolve() / ORACLE_LOGS_DIR / f"{digest}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, reference.to_json().encode("utf-8"))
    return str(out)


def _prepare_models(cfg: TrialConfig, log, bench: Benchmark | None) -> Prepared:
    """The target/oracle for `cfg` (or the user's models with `prepare.enabled: false`), from the cache if built.

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
        prepared = _prepared(final)
        _log_notes(prepared.report, log)
        return prepared

    with _building(final) as build:
        report = _build(cfg, bench, key, build, log)
    log(f"prepare: done in {report['seconds']} s -> {final}")
    return _prepared(final)


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """A fresh `<key>.tmp-<pid>` folder beside `final`, renamed to `final` when the block completes.

    Removed when the block raises, Ctrl-C included, so an interrupted or failed build leaves neither a cache entry
    that looks finished nor a temporary folder; another process that finished the same key first keeps its entry.
    """
    build = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    try:
        yield build
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    try:
        build.rename(final)
    except OSError:  # another process finished the same key first: keep theirs
        shutil.rmtree(build, ignore_errors=True)


def _build(cfg: TrialConfig, bench: Benchmark, key: str, build: Path, log) -> dict:
    """Build the base (tiny preset), target and oracle models of `cfg` into `build`; returns the report written."""
    started = time.perf_counter()
    base = cfg.model.name_or_path
    if base == TINY_PRESET:
        texts = tokenizer_texts(bench)
        base = str(build_tiny_llama(cfg.model.tiny, texts, build / "base", max_positions=2 * cfg.data.max_length))
        log(f"prepare: built {TINY_PRESET} ({cfg.model.tiny.num_layers} layers) with a tokenizer trained on "
            f"{len(texts)} benchmark strings")
    report: dict = {"key": key, "base_model": cfg.model.name_or_path, "benchmark": bench.name,
                    "base": evaluate_saved_model(base, cfg, metrics=list(BEFORE_METRICS))}
    for split in ("target", "oracle"):
        log(f"prepare: fine-tuning the {split} model ({cfg.prepare.epochs} epochs) ...")
        job = WorkerJob(trial=cfg, task="finetune", model_dir=base,
                        output_dir=str(build / split), finetune_split=split, evaluate=True)
        outcome = fit_to_end(build_trainer(job, storage_path=str(build / "ray"), name=f"prepare-{split}"),
                             build / split)
        report[split] = {k: v for k, v in load_eval(build / split).aggregates.items()
                         if isinstance(v, (int, float))}
        report[split]["train_loss_last_epoch"] = outcome.get("train/loss")
    _write_oracle_reference(build)
    extra = finetune_extra(bench, cfg)
    if extra:
        report["extra_train"] = {"rows": len(extra), "note": _extra_note(cfg, len(extra))}
    report["warnings"] = knowledge_warnings(report["target"], report["oracle"])
    _log_notes(report, log)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (build / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
    shutil.rmtree(build / "ray", ignore_errors=True)
    return report


def knowledge_warnings(target: dict, oracle: dict) -> list[str]:
    """Why unlearning on these prepared models would measure nothing, as sentences (empty when none applies).

    - The target must know its forget set clearly better than the oracle: forget quality compares the unlearned
      model with the oracle, so a target that starts where the oracle is leaves it nothing to move. "Clearly" is
      both a ratio and a gap (`target >= FORGET_PROB_RATIO * oracle` and `target - oracle >= FORGET_PROB_GAP`):
      the ratio alone passes on noise when both are tiny (0.002 vs 0.004), the gap alone passes when both are
      large and the forget answers are mostly predictable from retain data (0.80 vs 0.85). An oracle at 2/3 or
      more therefore always warns: then the forget set is not what distinguishes the target.
    - The target's model_utility must not be near 0 (< `MIN_UTILITY`): a harmonic mean that small means some retain
      or eval set was not learned at all, and utility comparisons between trials are noise.
    A metric missing from either report is not judged.
    """
    out = []
    t, o = target.get("forget_prob"), oracle.get("forget_prob")
    if _finite(t) and _finite(o) and (t < FORGET_PROB_RATIO * o or t - o < FORGET_PROB_GAP):
        out.append(f"the target does not know its forget set: forget quality will not move (forget_prob: target "
                   f"{t:.3g}, oracle {o:.3g}; wanted >= {FORGET_PROB_RATIO} x the oracle's and >= "
                   f"{FORGET_PROB_GAP} above it: more prepare.epochs, a higher prepare.lr or a larger model)")
    u = target.get("model_utility")
    if _finite(u) and u < MIN_UTILITY:
        out.append(f"the target's model_utility is {u:.3g} (< {MIN_UTILITY}): it has not learned its retain/eval sets, "
                   "so utility differences between trials are noise")
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _extra_note(cfg: TrialConfig, rows: int) -> str:
    if cfg.model.name_or_path == TINY_PRESET:
        return (f"stand-in for pretraining: target and oracle also trained on {rows} real-authors/world-facts rows; "
                "utility on those sets measures recall of trained facts")
    return (f"target and oracle also trained on the benchmark's {rows} invented world-facts/real-authors rows "
            "(no model knows them otherwise); utility on those sets measures recall of trained facts")


def _log_notes(report: dict, log) -> None:
    """The report's notes and warnings on the console, on a cache hit too: a sweep prints them every time."""
    if "extra_train" in report:
        log(f"prepare: {report['extra_train']['note']}")
    for warning in report.get("warnings", []):
        log(f"prepare: WARNING: {warning}")


def _prepared(root: Path) -> Prepared:
    ref = root / ORACLE_REFERENCE_FILE
    return Prepared(str(root / "target" / "final_model"), str(ref) if ref.is_file() else None,
                    json.loads((root / REPORT_FILE).read_text()))


def prepared_dir(prepared: Prepared) -> Path | None:
    """The cache directory `prepare` built `prepared` in (`<cache_dir>/prepared/<key>`, holding `target/`,
    `oracle/` and `prepare_report.json`); None for a user-supplied model (`prepare.enabled: false`)."""
    return Path(prepared.target_dir).parents[1] if prepared.report else None


def _write_oracle_reference(build: Path) -> None:
    """Cache what forget quality and PrivLeak need from the oracle: its per-item truth ratios and MIA AUC."""
    ref = oracle_reference_from_dir(build / "oracle")
    (build / ORACLE_REFERENCE_FILE).write_text(ref.to_json())
