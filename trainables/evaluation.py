"""Evaluating a saved model directory: what a trial's rank 0, `prepare` and `clreg-sweep eval` all call.

Evaluation always reads the model back from disk (safetensors), so what is scored is exactly what was saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainables.config import TrialConfig
from trainables.data.loading import load_benchmark
from trainables.metrics import EvalResult, OracleReference, evaluate, oracle_reference, save_eval
from trainables.metrics.evaluate import AGGREGATES_FILE, PER_ITEM_FILE
from trainables.model.layers import resolve_layer
from trainables.model.loading import load_causal_lm, load_tokenizer, num_layers


def evaluate_saved_model(model_dir: str | Path, cfg: TrialConfig, target_layer: int | None = None,
                         oracle_path: str | None = None, out_dir: str | Path | None = None,
                         metrics: list[str] | None = None) -> dict:
    """Evaluate the model saved in `model_dir` on `cfg.data`'s benchmark and return its aggregates record.

    The record is what `eval_aggregates.json` holds (`EvalResult.aggregates_json`): every metric value plus
    `eval_definitions`, `eval_definitions_version` and `missing_reasons`, so a caller can say why a metric is
    missing; callers that want only numbers filter by type.

    Args:
        model_dir: A saved HF model (a trial's `final_model`, a prepared target, any local model).
        cfg: Trial config: data, eval settings and, when `target_layer` is None, `clreg.layer` for the
            representation metrics (so a run without CLReg is measured at the same layer as one with it).
        target_layer: 0-based decoder layer of the representation metrics.
        oracle_path: JSON file of the oracle's `OracleReference` (forget quality and PrivLeak need it; without
            it they are reported as missing).
        out_dir: If given, the aggregates and per-item values are written there as JSON.
        metrics: Registered metric names to compute (default: all of the benchmark family's).
    """
    tokenizer = load_tokenizer(str(model_dir), cfg.model.trust_remote_code)
    model = load_causal_lm(str(model_dir), cfg.model, trainable=False).eval()
    if torch.cuda.is_available() and cfg.train.gpus_per_worker > 0:
        model = model.cuda()
    if target_layer is None:
        target_layer = resolve_layer(cfg.clreg.layer, num_layers(model))
    oracle = OracleReference.from_json(Path(oracle_path).read_text()) if oracle_path else None
    bench = load_benchmark(cfg.data, cfg.prepare.cache_dir)
    result = evaluate(model, tokenizer, bench, cfg.eval, target_layer=target_layer,
                      max_length=cfg.data.max_length, oracle=oracle, metrics=metrics)
    if out_dir is not None:
        save_eval(result, Path(out_dir))
    return result.aggregates_json()


def load_eval(directory: str | Path) -> EvalResult:
    """Read back the evaluation that `save_eval` wrote to `directory`, definitions and missing reasons included."""
    d = Path(directory)
    return EvalResult.from_json(json.loads((d / AGGREGATES_FILE).read_text()),
                                json.loads((d / PER_ITEM_FILE).read_text()))


def oracle_reference_from_dir(directory: str | Path) -> OracleReference:
    """The `OracleReference` of the oracle whose evaluation was saved in `directory`."""
    return oracle_reference(load_eval(directory))
