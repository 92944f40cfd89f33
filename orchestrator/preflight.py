"""Checks that run before any process starts: a broken config fails in seconds, not after an hour."""

from __future__ import annotations

from pathlib import Path

from trainables.config import TrialConfig
from trainables.data.loading import load_benchmark
from trainables.data.schema import Benchmark, require_paraphrases
from trainables.model.layers import resolve_layer
from trainables.model.loading import check_model_source
from trainables.model.tiny import TINY_PRESET
from trainables.objectives import resolve_method


def model_depth(cfg: TrialConfig) -> int:
    """Number of decoder layers of the configured model, read from its config without loading weights."""
    if cfg.model.name_or_path == TINY_PRESET:
        return cfg.model.tiny.num_layers
    check_model_source(cfg.model.name_or_path)
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    return int(conf.num_hidden_layers)


def preflight(cfg: TrialConfig) -> Benchmark:
    """Validate method, data and target layer of `cfg`; return the loaded benchmark.

    Raises a ValueError subclass whose message names the field and the allowed values.
    """
    resolve_method(cfg.method)
    if cfg.model.name_or_path != TINY_PRESET:
        check_model_source(cfg.model.name_or_path)
    if cfg.prepare.oracle_path and not Path(cfg.prepare.oracle_path).is_dir():
        raise ValueError(f"prepare.oracle_path {cfg.prepare.oracle_path!r} is not a directory")
    bench = load_benchmark(cfg.data, Path(cfg.prepare.cache_dir))
    if cfg.clreg.enabled:
        resolve_layer(cfg.clreg.layer, model_depth(cfg))
    if cfg.clreg.enabled and cfg.clreg.positives == "paraphrase":
        require_paraphrases(bench.forget)
    return bench
