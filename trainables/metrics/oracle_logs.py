"""open-unlearning's evaluation logs (`TOFU_EVAL.json`, `MUSE_EVAL.json`), read as an oracle reference and written.

open-unlearning publishes the evaluation of every retain-only model it released (HF dataset `open-unlearning/eval`,
`setup_data.py --eval_logs`). Such a log is a JSON object: metric name -> `{"agg_value": x, "value_by_index":
{"<i>": {...}}}`. Its forget quality reads the retain model's `forget_truth_ratio.value_by_index[*].score`, its
PrivLeak the retain model's `mia_min_k.agg_value`; those two are exactly our `OracleReference`. Reading such a log
lets a released target model be unlearned and scored without training an oracle; writing our evaluation in the
same layout lets open-unlearning's tooling (and `read_oracle_logs`) read our results.

Per-item entries keep open-unlearning's keys: `score` (truth ratio, extraction strength, exact memorisation),
`prob` (probabilities), `rougeL_recall` / `rougeL_f1` (ROUGE), so a log that went through us is shaped like one
open-unlearning wrote.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.atomic_files import write_json_atomic
from trainables.data.schema import Benchmark
from trainables.metrics.registry import OracleReference

if TYPE_CHECKING:
    from trainables.metrics.evaluate import EvalResult

LOG_FILES = {"tofu": "TOFU_EVAL.json", "muse": "MUSE_EVAL.json"}
TRUTH_RATIO = "forget_truth_ratio"
MIN_K = "mia_min_k"
# Which part of a log each oracle metric of ours needs.
NEEDS = {"forget_quality": TRUTH_RATIO, "privleak": MIN_K}


@dataclass(frozen=True)
class OuMetric:
    """How one of our metrics is stored in open-unlearning's log.

    Attributes:
        name: open-unlearning's metric name (configs/eval/tofu_metrics, muse_metrics).
        item_key: the key of each per-item entry of `value_by_index`; None for metrics without per-item values
            (forget quality, model utility, PrivLeak, MIA AUCs).
    """

    name: str
    item_key: str | None = None


# Our metric name -> its open-unlearning counterpart. Our ra_/wf_ probabilities are the normalised ones
# (`*_Q_A_Prob_normalised`, the model-utility component), not open-unlearning's raw `*_Q_A_Prob`.
OU_METRICS: dict[str, OuMetric] = {
    "forget_truth_ratio": OuMetric(TRUTH_RATIO, "score"),
    "forget_quality": OuMetric("forget_quality"),
    "forget_prob": OuMetric("forget_Q_A_Prob", "prob"),
    "forget_rouge": OuMetric("forget_Q_A_ROUGE", "rougeL_recall"),
    "retain_prob": OuMetric("retain_Q_A_Prob", "prob"),
    "retain_rouge": OuMetric("retain_Q_A_ROUGE", "rougeL_recall"),
    "retain_truth_ratio": OuMetric("retain_Truth_Ratio", "score"),
    "ra_prob": OuMetric("ra_Q_A_Prob_normalised", "prob"),
    "ra_rouge": OuMetric("ra_Q_A_ROUGE", "rougeL_recall"),
    "ra_truth_ratio": OuMetric("ra_Truth_Ratio", "score"),
    "wf_prob": OuMetric("wf_Q_A_Prob_normalised", "prob"),
    "wf_rouge": OuMetric("wf_Q_A_ROUGE", "rougeL_recall"),
    "wf_truth_ratio": OuMetric("wf_Truth_Ratio", "score"),
    "model_utility": OuMetric("model_utility"),
    "extraction_strength": OuMetric("extraction_strength", "score"),
    "exact_memorization": OuMetric("exact_memorization", "score"),
    "mia_loss": OuMetric("mia_loss"),
    "mia_zlib": OuMetric("mia_zlib"),
    "mia_min_k": OuMetric(MIN_K),
    "mia_min_k_plus_plus": OuMetric("mia_min_k_plus_plus"),
    "privleak": OuMetric("privleak"),
    "verbmem_rougeL_f1": OuMetric("forget_verbmem_ROUGE", "rougeL_f1"),
    "knowmem_forget_rougeL_f1": OuMetric("forget_knowmem_ROUGE", "rougeL_f1"),
    "knowmem_retain_rougeL_f1": OuMetric("retain_knowmem_ROUGE", "rougeL_f1"),
}
MIA_AUCS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")


class OracleLogError(ValueError):
    """An open-unlearning evaluation log cannot serve as the oracle reference (the message names file and key)."""


@dataclass(frozen=True)
class OracleLog:
    """What a retain model's open-unlearning log gives us.

    Attributes:
        reference: its forget truth ratios (in index order; empty when the log has none) and min-k AUC (None when
            it has none): what forget quality and PrivLeak of an unlearned model compare against.
        aggregates: the log's `agg_value`s under our metric names, for the metrics that have a counterpart and a
            number (a `null` or NaN `agg_value`, which open-unlearning writes for what it could not compute, is
            left out).
    """

    reference: OracleReference
    aggregates: dict[str, float]

    def supplies(self, metric: str) -> bool:
        """Whether the log holds what oracle metric `metric` ("forget_quality" or "privleak") needs."""
        if NEEDS.get(metric) == TRUTH_RATIO:
            return bool(self.reference.forget_truth_ratios)
        if NEEDS.get(metric) == MIN_K:
            return self.reference.mia_min_k_auc is not None
        return True


def expected_log_items(bench: Benchmark) -> int | None:
    """How many forget truth ratios a log must hold for `bench`: its forget items with perturbed answers (what
    `forget_truth_ratio` scores) for TOFU; None (not checked) for MUSE, whose oracle reference is only min-k."""
    if bench.family != "tofu":
        return None
    return sum(1 for ex in bench.forget if ex.perturbed_answer)


def _load_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OracleLogError(f"{path}: {'is not a file' if path.exists() else 'no such file'}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OracleLogError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise OracleLogError(f"{path}: expected a JSON object of metric name -> {{\"agg_value\": ..., "
                             f"\"value_by_index\": ...}}, got a JSON {type(data).__name__}")
    return data


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _entry(path: Path, data: dict, key: str) -> dict:
    entry = data[key]
    if not isinstance(entry, dict):
        raise OracleLogError(f"{path}: {key}: expected an object with \"agg_value\", got {entry!r:.80}")
    return entry


def _agg_value(path: Path, data: dict, key: str) -> float | None:
    """`data[key]["agg_value"]` as a float; None for null / NaN; an error for anything else."""
    entry = _entry(path, data, key)
    if "agg_value" not in entry:
        raise OracleLogError(f"{path}: {key}: no \"agg_value\"; every open-unlearning metric has one")
    value = entry["agg_value"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not _is_number(value):
        raise OracleLogError(f"{path}: {key}.agg_value: expected a number or null, got {value!r:.80}")
    return float(value)


def _truth_ratios(path: Path, data: dict, expected_items: int | None) -> list[float]:
    """`forget_truth_ratio.value_by_index[*].score` in index order, indices exactly 0..N-1."""
    key = f"{TRUTH_RATIO}.value_by_index"
    by_index = _entry(path, data, TRUTH_RATIO).get("value_by_index")
    if not isinstance(by_index, dict) or not by_index:
        raise OracleLogError(f"{path}: {key}: expected a non-empty object of index -> {{\"score\": number}}, got "
                             f"{by_index!r:.80}")
    n = len(by_index)
    if set(by_index) != {str(i) for i in range(n)}:
        odd = sorted(set(by_index) - {str(i) for i in range(n)})[:3]
        raise OracleLogError(f"{path}: {key}: indices must be exactly \"0\"..\"{n - 1}\" (one per forget item); "
                             f"unexpected: {', '.join(map(repr, odd))}")
    scores = []
    for i in range(n):
        item = by_index[str(i)]
        score = item.get("score") if isinstance(item, dict) else None
        if not _is_number(score) or math.isnan(score):
            raise OracleLogError(f"{path}: {key}[\"{i}\"]: expected {{\"score\": number}}, got {item!r:.80}")
        scores.append(float(score))
    if expected_items is not None and n != expected_items:
        raise OracleLogError(f"{path}: {key}: {n} truth ratios, but the forget split has {expected_items} items "
                             f"with perturbed answers; use the log of the retain model of the same forget split "
                             f"(data.forget_split, data.forget_limit)")
    return scores


def read_oracle_logs(path: str | Path, expected_items: int | None) -> OracleLog:
    """Read a retain model's open-unlearning log as our oracle reference.

    Args:
        path: a `TOFU_EVAL.json` / `MUSE_EVAL.json` written by open-unlearning (or by `write_open_unlearning_logs`).
        expected_items: the number of forget truth ratios the log must hold (`expected_log_items`), or None to
            accept any number.

    Returns:
        The `OracleLog`: reference for forget quality / PrivLeak and the aggregates under our metric names.

    Raises:
        OracleLogError: naming the file and the key: not a file, not JSON, not an object, neither
            `forget_truth_ratio` nor `mia_min_k` present, a malformed `value_by_index` (not index -> {"score":
            number}, indices not exactly 0..N-1, N != expected_items), an `agg_value` that is not a number, or a
            `mia_min_k` AUC outside [0, 1].
    """
    path = Path(path)
    data = _load_object(path)
    if TRUTH_RATIO not in data and MIN_K not in data:
        raise OracleLogError(f"{path}: neither {TRUTH_RATIO} (forget quality) nor {MIN_K} (PrivLeak) is present; "
                             f"keys: {', '.join(sorted(data)[:12]) or 'none'}")
    aggregates = {}
    for ours, ou in OU_METRICS.items():
        if ou.name in data and (value := _agg_value(path, data, ou.name)) is not None:
            aggregates[ours] = value
    ratios = _truth_ratios(path, data, expected_items) if TRUTH_RATIO in data else []
    auc = None
    if MIN_K in data:
        auc = aggregates.get("mia_min_k")
        if auc is None or not 0.0 <= auc <= 1.0:
            raise OracleLogError(f"{path}: {MIN_K}.agg_value: expected the min-k MIA AUC, a number in [0, 1], got "
                                 f"{data[MIN_K].get('agg_value')!r}")
    return OracleLog(OracleReference(forget_truth_ratios=ratios, mia_min_k_auc=auc), aggregates)


def is_open_unlearning_log(path: str | Path) -> bool:
    """Whether `path` is an open-unlearning log rather than our `OracleReference` JSON (`oracle_reference.json`).

    Decided by content: ours is an object with `forget_truth_ratios` and `mia_min_k_auc`, nothing else is.

    Raises:
        OracleLogError: when `path` is not a file, not JSON or not a JSON object.
    """
    data = _load_object(Path(path))
    return not {"forget_truth_ratios", "mia_min_k_auc"} <= set(data)


def _ou_entry(name: str, value: float | None, per_item: list | None) -> dict:
    ou = OU_METRICS[name]
    entry: dict[str, Any] = {"agg_value": value}
    if name in MIA_AUCS:
        entry["auc"] = value
    if ou.item_key is not None and per_item is not None:
        entry["value_by_index"] = {str(i): {ou.item_key: v} for i, v in enumerate(per_item)}
    return entry


def write_open_unlearning_logs(result: EvalResult, family: str, path: str | Path) -> Path:
    """Write `result` as open-unlearning's log: `TOFU_EVAL.json` (tofu) or `MUSE_EVAL.json` (muse) in `path`.

    Only metrics with an open-unlearning counterpart (`OU_METRICS`) are written, under its names, per-item values
    keyed "0".."N-1"; a MISSING metric is written with `"agg_value": null`, as open-unlearning writes a forget
    quality it could not compute. Keys are sorted and indented as open-unlearning writes them; the file is written
    atomically.

    Args:
        result: our evaluation (`trainables.metrics.evaluate`).
        family: "tofu" or "muse": which file name.
        path: the directory to write into (created if needed).

    Returns:
        The written file.
    """
    if family not in LOG_FILES:
        raise ValueError(f"unknown benchmark family {family!r}; allowed: {', '.join(sorted(LOG_FILES))}")
    logs = {OU_METRICS[name].name: _ou_entry(name, value, result.per_item.get(name))
            for name, value in result.aggregates.items() if name in OU_METRICS}
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    target = out / LOG_FILES[family]
    write_json_atomic(target, dict(sorted(logs.items())), indent=4)
    return target
