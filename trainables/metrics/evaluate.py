"""One evaluation of a model on a benchmark: run the requested metrics, collect aggregates and per-item values.

The same function evaluates the oracle (retain-only) model during `prepare`, whose `oracle_reference` is cached and
passed to every later evaluation of unlearned models (forget quality, privleak). Every result records which metric
definitions produced it (`eval.definitions` and its version) and why each MISSING metric is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trainables.atomic_files import write_json_atomic
from trainables.config import EvalConfig
from trainables.data.schema import Benchmark
from trainables.metrics import attack_suite, mia_suite, muse_suite, representation_suite, tofu_suite  # noqa: F401
from trainables.metrics.definitions import DEFINITIONS_VERSION, OPEN_UNLEARNING, check
from trainables.metrics.registry import DEFAULTS, METRICS, EvalContext, OracleReference

AGGREGATES_FILE = "eval_aggregates.json"
PER_ITEM_FILE = "eval_per_item.json"
# Non-metric keys of eval_aggregates.json (strings and a dict beside the metric values).
DEFINITIONS_KEY = "eval_definitions"
DEFINITIONS_VERSION_KEY = "eval_definitions_version"
MISSING_REASONS_KEY = "missing_reasons"
RECORD_KEYS = (DEFINITIONS_KEY, DEFINITIONS_VERSION_KEY, MISSING_REASONS_KEY)
# `missing` key of a metric that has a value computed from only some of its inputs (model utility).
PARTIAL_SUFFIX = "_partial"


@dataclass
class EvalResult:
    """Metric values of one evaluation.

    Attributes:
        aggregates: every requested metric -> its value; None = MISSING (and always for the non-scalar
            `entanglement_profile`, whose content is in `per_item`).
        per_item: metric -> per-item values, for the metrics that have them.
        definitions: the `eval.definitions` the values were computed under.
        definitions_version: `DEFINITIONS_VERSION[definitions]` at the time (None: the current one).
        missing: metric -> why it is MISSING; `<metric>_partial` -> what a value computed from only some of its
            inputs left out (`model_utility_partial`).
    """

    aggregates: dict[str, float | None]
    per_item: dict[str, list]
    definitions: str = OPEN_UNLEARNING
    definitions_version: str | None = None
    missing: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.definitions_version is None:
            self.definitions_version = DEFINITIONS_VERSION[check(self.definitions)]

    def aggregates_json(self) -> dict:
        """The content of `eval_aggregates.json`: every metric value, plus the definitions and missing reasons.

        The three extra keys (`RECORD_KEYS`) hold strings and a dict; readers that want numbers filter by type.
        """
        return {**self.aggregates, DEFINITIONS_KEY: self.definitions,
                DEFINITIONS_VERSION_KEY: self.definitions_version, MISSING_REASONS_KEY: dict(self.missing)}

    @classmethod
    def from_json(cls, aggregates: dict, per_item: dict) -> EvalResult:
        """Inverse of `aggregates_json` (with the per-item file's content). A file from before definitions were
        recorded reads as open-unlearning's with an unknown version."""
        values = {k: v for k, v in aggregates.items() if k not in RECORD_KEYS}
        return cls(aggregates=values, per_item=per_item,
                   definitions=aggregates.get(DEFINITIONS_KEY, OPEN_UNLEARNING),
                   definitions_version=aggregates.get(DEFINITIONS_VERSION_KEY, "unknown"),
                   missing=dict(aggregates.get(MISSING_REASONS_KEY, {})))


def default_metrics(family: str) -> list[str]:
    """Every metric registered for a benchmark family ("tofu" or "muse")."""
    if family not in DEFAULTS:
        raise ValueError(f"unknown benchmark family {family!r}; allowed: {', '.join(sorted(DEFAULTS))}")
    return list(DEFAULTS[family])


def evaluate(model, tokenizer, benchmark: Benchmark, cfg: EvalConfig, target_layer: int, max_length: int,
             oracle: OracleReference | None = None, metrics: list[str] | None = None) -> EvalResult:
    """Evaluate `model` on every item of `benchmark`.

    Args:
        model: HF causal LM (optionally peft-wrapped); its train/eval mode is restored afterwards.
        tokenizer: its tokenizer.
        benchmark: the data; absent sets make their metrics MISSING.
        cfg: batch size, generation length, per-layer profile.
        target_layer: 0-based decoder layer of the CLReg representation (`trainables.model.layers.resolve_layer`).
        max_length: tokens per sequence.
        oracle: the retain-only model's reference; without it forget quality and privleak are MISSING.
        metrics: names to compute (default: every metric of `benchmark.family`).

    Returns:
        `EvalResult` with a key per requested metric, `cfg.definitions`, and a reason per MISSING metric.

    Raises:
        UnknownNameError: naming the valid metrics, before any forward pass, when a name is not registered.
    """
    names = default_metrics(benchmark.family) if metrics is None else list(metrics)
    for name in names:
        METRICS.get(name)
    ctx = EvalContext(model=model, tokenizer=tokenizer, benchmark=benchmark, cfg=cfg, target_layer=target_layer,
                      max_length=max_length, oracle=oracle)
    results = {name: ctx.metric(name) for name in names}
    reasons = {(name if r.value is None else name + PARTIAL_SUFFIX): r.reason
               for name, r in results.items() if r.reason is not None}
    return EvalResult(aggregates={name: r.value for name, r in results.items()},
                      per_item={name: r.per_item for name, r in results.items() if r.per_item is not None},
                      definitions=cfg.definitions, missing=reasons)


def oracle_reference(result: EvalResult) -> OracleReference:
    """What an unlearned model's evaluation needs from the oracle's own `evaluate` result.

    The oracle must have been evaluated with `forget_truth_ratio` and `mia_min_k` (the TOFU defaults; MUSE has
    only the latter); whatever is absent leaves the dependent metric MISSING later.
    """
    return OracleReference(forget_truth_ratios=[float(x) for x in result.per_item.get("forget_truth_ratio", [])],
                           mia_min_k_auc=result.aggregates.get("mia_min_k"))


def save_eval(result: EvalResult, directory: str | os.PathLike) -> None:
    """Write `eval_aggregates.json` and `eval_per_item.json` into `directory`, each atomically (temp + rename).

    Readers never see a half-written file. Non-finite values (an infinite variance entanglement) are written as
    JSON's `Infinity` / `NaN` extensions, which Python's `json` reads back. The aggregates file also records the
    definitions, their version and the missing reasons (`EvalResult.aggregates_json`).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / AGGREGATES_FILE, result.aggregates_json())
    write_json_atomic(out / PER_ITEM_FILE, result.per_item)
