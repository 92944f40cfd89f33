"""The public entry of the data package: a benchmark name from the config -> a loaded `Benchmark`.

Loaders are registered by name, so `data.benchmark` in a sweep file is checked against the registered names, and
a new benchmark is one more registered function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from trainables.config import DataConfig
from trainables.data import synthetic_tofu
from trainables.data.muse import load_muse
from trainables.data.schema import Benchmark
from trainables.data.tofu import load_tofu
from trainables.registry import Registry

BenchmarkLoader = Callable[[DataConfig, Path], Benchmark]
BENCHMARKS: Registry[BenchmarkLoader] = Registry("benchmark")


@BENCHMARKS.register("synthetic-tofu")
def load_synthetic_tofu(cfg: DataConfig, cache_dir: Path) -> Benchmark:
    """Generate the synthetic benchmark (or reuse a matching generation) and load it with the TOFU loader.

    Files go to `cfg.path`, or by default to `cache_dir/data/synthetic-tofu-{hash of cfg.synthetic}`, so every
    trial of a sweep with the same synthetic config shares one generation. The split names follow from
    `synthetic.forget_percent`; `cfg.forget_split` / `retain_split` / `holdout_split` are ignored.
    """
    directory = Path(cfg.path) if cfg.path else \
        Path(cache_dir) / "data" / f"synthetic-tofu-{synthetic_tofu.config_hash(cfg.synthetic)}"
    synthetic_tofu.ensure(cfg.synthetic, directory)
    forget, retain, holdout = synthetic_tofu.split_names(cfg.synthetic.forget_percent)
    local = cfg.model_copy(update={"path": str(directory), "forget_split": forget, "retain_split": retain,
                                   "holdout_split": holdout})
    return load_tofu(local, name="synthetic-tofu")


@BENCHMARKS.register("tofu")
def load_tofu_benchmark(cfg: DataConfig, cache_dir: Path) -> Benchmark:
    """TOFU from `cfg.path` (local directory or hub name; hub downloads use the `datasets` cache)."""
    return load_tofu(cfg)


@BENCHMARKS.register("muse")
def load_muse_benchmark(cfg: DataConfig, cache_dir: Path) -> Benchmark:
    """MUSE from `cfg.path` (local directory or hub name; hub downloads use the `datasets` cache)."""
    return load_muse(cfg)


def load_benchmark(cfg: DataConfig, cache_dir: str | Path) -> Benchmark:
    """Load the benchmark `cfg.benchmark` names.

    Raises:
        UnknownNameError: the name is not registered (lists the registered ones).
        DataError: the benchmark's files are missing or malformed.
    """
    return BENCHMARKS.get(cfg.benchmark)(cfg, Path(cache_dir))


def benchmark_fingerprint(benchmark: Benchmark) -> str:
    """sha256 (hex) of a canonical JSON dump of the benchmark's name, family and every split.

    `source` is left out: the same data read from another directory gives the same fingerprint, so cache keys
    built from it (prepared target / oracle models) depend on the content only.
    """
    payload = {
        "name": benchmark.name,
        "family": benchmark.family,
        "splits": {split: [dataclasses.asdict(e) for e in getattr(benchmark, split)]
                   for split in ("forget", "retain", "holdout", "extra_train")},
        "eval_sets": {key: [dataclasses.asdict(e) for e in rows] for key, rows in benchmark.eval_sets.items()},
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
