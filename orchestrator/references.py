"""Reference points of a sweep: the target (before unlearning) and the oracle (retain only), scored once.

Unlearning is read against two models: the target it starts from, which knows the forget set, and the oracle that
never saw it (TOFU's retain-only model). Each becomes one point on the metrics' axes, shown beside the trials on the
Pareto plot, in the report and on the MLflow parent run, so a trial can be placed between "did nothing" and "as if
never trained". They are context only: never part of the front or the hypervolume.

`prepare` evaluates both models when it fine-tunes them, but the target before the oracle exists, so its saved
forget quality and PrivLeak are missing. Here they are computed from the saved per-item forget truth ratios and the
min-k AUC, with the project's own metric functions, against the oracle reference the trials are scored against
(the trained oracle's, or the released log's with `prepare.oracle_logs`). The oracle is scored against itself:
the KS test of a sample against itself gives forget quality 1, PrivLeak 0. With `prepare.oracle_logs` the oracle
point is the log's values instead, labelled as such.

The points are cached as `reference.json` in the prepared directory, computed on first use (so caches that
predate the file get it too) and again whenever what they depend on changes (oracle reference, log, eval
definitions). With `prepare.enabled: false` the given model is the target: it is evaluated once on the driver
(its GPU when it has one and `train.gpus_per_worker > 0`) and cached under `<cache_dir>/references/<key>`, keyed
by model path, benchmark fingerprint and the evaluation settings; the oracle point then comes from the saved
evaluation under `prepare.oracle_path` or from `prepare.oracle_logs`, and is left out (with the reason) otherwise.

Only the dataclasses are imported at module level: `tracking` and `report` read references back from MLflow
without loading torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.pareto_artifacts import Marker
from trainables.atomic_files import write_json_atomic

if TYPE_CHECKING:
    from orchestrator.prepare import Prepared
    from trainables.config import TrialConfig
    from trainables.data.schema import Benchmark
    from trainables.metrics.evaluate import EvalResult
    from trainables.metrics.registry import OracleReference

REFERENCE_FILE = "reference.json"
REFERENCES_DIR = "references"  # under prepare.cache_dir: user-supplied targets, evaluated once
TARGET, ORACLE = "target", "oracle"
TARGET_LABEL = "target (before unlearning)"
ORACLE_LABEL = "oracle (retain only)"
ORACLE_LOG_LABEL = "oracle (released log)"
METRIC_PREFIX = "reference/"
TAG_PREFIX = "clreg.reference."
# Bump when this module changes how a cached reference.json is computed from the same inputs.
VERSION = 1


@dataclass(frozen=True)
class ReferencePoint:
    """One reference model's metrics.

    Attributes:
        name: "target" or "oracle", the key under which MLflow stores it (`reference/<name>/<metric>`).
        label: what plots and tables call it, e.g. "oracle (released log)".
        metrics: metric name -> finite value; a metric the model has no value for is absent.
    """

    name: str
    label: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class References:
    """The reference points of a sweep, and for each one left out, why.

    Attributes:
        points: target first, then oracle, those that exist.
        absent: name -> the sentence saying why that point is missing (e.g. no oracle was given).
    """

    points: tuple[ReferencePoint, ...] = ()
    absent: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics of the parent run: `reference/<name>/<metric>`."""
        return {f"{METRIC_PREFIX}{p.name}/{m}": v for p in self.points for m, v in sorted(p.metrics.items())}

    def tags(self) -> dict[str, str]:
        """The MLflow tags of the parent run: each point's label, each absent point's reason."""
        return ({f"{TAG_PREFIX}{p.name}": p.label for p in self.points}
                | {f"{TAG_PREFIX}{name}.absent": why for name, why in self.absent.items()})

    def markers(self, names: Sequence[str]) -> list[Marker]:
        """The points that have every metric of `names` (the objectives), as Pareto-plot markers."""
        return [Marker(p.label, tuple(p.metrics[n] for n in names)) for p in self.points
                if all(n in p.metrics for n in names)]

    def describe(self, names: Sequence[str]) -> str:
        """One line for the console: each point's values on `names`, and why a point is absent."""
        parts = [f"{p.label} (" + ", ".join(f"{n}={_fmt(p.metrics.get(n))}" for n in names) + ")"
                 for p in self.points]
        return "; ".join(parts + [f"no {name}: {why}" for name, why in self.absent.items()]) or "none"

    def to_json(self) -> dict[str, Any]:
        return {"points": [{"name": p.name, "label": p.label, "metrics": p.metrics} for p in self.points],
                "absent": self.absent}

    def at_target(self, values: Mapping[str, Sequence[float]]) -> list[tuple[str, int, int, float]]:
        """(metric, how many of its `values` equal the target's own value (to 1e-9), how many values, that value)
        for each metric of `values` where some do.

        Why: a metric with few possible values can stay where the target had it whatever a trial changed (forget
        quality is a KS-test p-value over the forget items: on the tiny benchmark's 16 it takes a handful of
        values); a front or an ablation over such values compares models unlearning left where they were, and must
        say so where it is printed (the sweep's closing lines, the report).
        """
        target = next((p.metrics for p in self.points if p.name == TARGET), {})
        found = []
        for name, scored in values.items():
            if name not in target:
                continue
            same = sum(math.isclose(v, target[name], rel_tol=1e-9, abs_tol=1e-12) for v in scored)
            if same:
                found.append((name, same, len(scored), target[name]))
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> References:
        return cls(tuple(ReferencePoint(p["name"], p["label"], {k: float(v) for k, v in p["metrics"].items()})
                         for p in data["points"]), dict(data["absent"]))

    @classmethod
    def from_run(cls, metrics: Mapping[str, float], tags: Mapping[str, str]) -> References:
        """What `metrics()` and `tags()` logged on a parent run, read back (a run without them gives none)."""
        points = []
        for name in (TARGET, ORACLE):
            values = {key[len(METRIC_PREFIX) + len(name) + 1:]: float(v) for key, v in metrics.items()
                      if key.startswith(f"{METRIC_PREFIX}{name}/")}
            if values or f"{TAG_PREFIX}{name}" in tags:
                points.append(ReferencePoint(name, tags.get(f"{TAG_PREFIX}{name}", name), dict(sorted(values.items()))))
        absent = {name: tags[f"{TAG_PREFIX}{name}.absent"] for name in (TARGET, ORACLE)
                  if f"{TAG_PREFIX}{name}.absent" in tags}
        return cls(tuple(points), absent)


def score(result: EvalResult, oracle: OracleReference | None, definitions: str) -> dict[str, float]:
    """A saved evaluation's finite aggregates, with forget quality and PrivLeak computed against `oracle`.

    Forget quality and PrivLeak are recomputed whenever the evaluation asked for them (they are in its
    aggregates, possibly as None), from its per-item `forget_truth_ratio` and its `mia_min_k` AUC, exactly as an
    evaluation given `oracle` computes them; without the inputs (no oracle, no truth ratios, an oracle AUC of 1
    under `exact`, where PrivLeak is undefined) they stay absent.

    Args:
        result: the model's saved evaluation (`trainables.evaluation.load_eval`).
        oracle: the reference of the retain-only model, or None.
        definitions: `eval.definitions`: the PrivLeak formula (forget quality is the same KS test under both).
    """
    from trainables.metrics import forget_quality, privleak
    from trainables.metrics.definitions import EXACT

    values = {k: float(v) for k, v in result.aggregates.items()
              if k not in ("forget_quality", "privleak") and _finite(v)}
    own = result.per_item.get("forget_truth_ratio")
    if "forget_quality" in result.aggregates and oracle is not None and oracle.forget_truth_ratios and own:
        values["forget_quality"] = forget_quality(own, oracle.forget_truth_ratios)
    auc, ref = result.aggregates.get("mia_min_k"), None if oracle is None else oracle.mia_min_k_auc
    if "privleak" in result.aggregates and _finite(auc) and _finite(ref) and not (definitions == EXACT and ref == 1):
        values["privleak"] = privleak(auc, ref, definitions=definitions)
    return values


def load_references(cfg: TrialConfig, prepared: Prepared, bench: Benchmark, log: Callable[[str], Any] = print
                    ) -> References:
    """The sweep's reference points for the trial config `cfg` and what `prepare` returned for it.

    Read from `reference.json` when it is there and was computed from the same inputs, else computed (evaluating a
    user-supplied target once, see the module docstring) and written atomically.

    Args:
        cfg: the sweep's base trial config (data, model, prepare and eval settings).
        prepared: `orchestrator.prepare.prepare(cfg)`.
        bench: `cfg.data`'s benchmark, as loaded by the caller.
        log: progress lines (the target's evaluation may take a while).
    """
    from orchestrator.prepare import prepared_dir
    from trainables.data.loading import benchmark_fingerprint
    from trainables.metrics.registry import OracleReference

    reference_text = Path(prepared.oracle_reference).read_text() if prepared.oracle_reference else None
    oracle_ref = OracleReference.from_json(reference_text) if reference_text else None
    root = prepared_dir(prepared)
    if root is None:
        root = _user_target_dir(cfg, benchmark_fingerprint(bench))
        _evaluate_once(cfg, prepared, root / TARGET, log)
    oracle_dir = _saved_oracle_eval(str(root) if cfg.prepare.enabled else cfg.prepare.oracle_path)
    inputs = {"oracle_reference": reference_text, "oracle_logs": _file_digest(cfg.prepare.oracle_logs),
              "oracle_dir": str(oracle_dir) if oracle_dir else None, "definitions": cfg.eval.definitions,
              "version": VERSION}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    cached = root / REFERENCE_FILE
    if cached.is_file():
        data = json.loads(cached.read_text())
        if data.get("inputs") == digest:
            return References.from_json(data)
    refs = compute_references(cfg, bench, root / TARGET, oracle_ref, oracle_dir)
    write_json_atomic(cached, {"inputs": digest, **refs.to_json()})
    return refs


def compute_references(cfg: TrialConfig, bench: Benchmark, target_dir: Path, oracle_ref: OracleReference | None,
                       oracle_dir: Path | None) -> References:
    """Both points from saved evaluations (and `prepare.oracle_logs`); no model is loaded.

    Args:
        cfg: the base trial config (`eval.definitions`, `prepare.*`).
        bench: its benchmark (how many forget truth ratios a log must hold).
        target_dir: holds the target's `eval_aggregates.json` and `eval_per_item.json`.
        oracle_ref: the oracle reference the trials are scored against (None: forget quality and PrivLeak absent).
        oracle_dir: the oracle's saved evaluation, or None where there is none.
    """
    from trainables.evaluation import load_eval
    from trainables.metrics.evaluate import oracle_reference
    from trainables.metrics.oracle_logs import expected_log_items, read_oracle_logs

    definitions = cfg.eval.definitions
    points, absent = [], {}
    if _has_eval(target_dir):
        points.append(ReferencePoint(TARGET, TARGET_LABEL, score(load_eval(target_dir), oracle_ref, definitions)))
    else:
        absent[TARGET] = f"the target's evaluation is not in {target_dir}"
    if cfg.prepare.oracle_logs:
        oracle_log = read_oracle_logs(cfg.prepare.oracle_logs, expected_log_items(bench))
        own = oracle_log.reference
        result = _as_result(oracle_log.aggregates, own)
        points.append(ReferencePoint(ORACLE, ORACLE_LOG_LABEL, score(result, own, definitions)))
    elif oracle_dir is not None:
        result = load_eval(oracle_dir)
        points.append(ReferencePoint(ORACLE, ORACLE_LABEL, score(result, oracle_reference(result), definitions)))
    elif cfg.prepare.enabled:
        absent[ORACLE] = f"the oracle's evaluation is not in {target_dir.parent / ORACLE}"
    elif cfg.prepare.oracle_path:
        absent[ORACLE] = (f"prepare.oracle_path {cfg.prepare.oracle_path} holds no saved evaluation "
                          f"(eval_aggregates.json and eval_per_item.json, in it or in its oracle/ folder)")
    else:
        absent[ORACLE] = ("no oracle: prepare.enabled is false and neither prepare.oracle_path nor "
                          "prepare.oracle_logs is set")
    return References(tuple(points), absent)


def _as_result(aggregates: Mapping[str, float], own: OracleReference) -> EvalResult:
    """A released log as an evaluation of the oracle, so `score` treats it like a saved one: forget quality and
    PrivLeak against its own truth ratios and AUC, where the log has them."""
    from trainables.metrics.evaluate import EvalResult

    values: dict[str, float | None] = dict(aggregates)
    per_item = {}
    if own.forget_truth_ratios:
        values["forget_quality"] = None
        per_item["forget_truth_ratio"] = list(own.forget_truth_ratios)
    if own.mia_min_k_auc is not None:
        values |= {"privleak": None, "mia_min_k": own.mia_min_k_auc}
    return EvalResult(values, per_item)


def _user_target_dir(cfg: TrialConfig, fingerprint: str) -> Path:
    """`<cache_dir>/references/<key>` of a user-supplied target: model, data content and evaluation settings."""
    name = cfg.model.name_or_path
    material = {
        "model": str(Path(name).resolve()) if Path(name).exists() else name,
        "model_settings": cfg.model.model_dump(mode="json", exclude={"name_or_path", "lora", "tiny"}),
        "benchmark": fingerprint,
        "max_length": cfg.data.max_length,
        "layer": str(cfg.clreg.layer),  # the representation metrics' layer
        "eval": cfg.eval.model_dump(mode="json"),
        "version": VERSION,
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.prepare.cache_dir).resolve() / REFERENCES_DIR / key


def _evaluate_once(cfg: TrialConfig, prepared: Prepared, out: Path, log: Callable[[str], Any]) -> None:
    """Evaluate the user-supplied target into `out` unless done before; built beside it and renamed into place,
    so a crash never leaves an evaluation that looks complete."""
    if _has_eval(out):
        return
    import torch

    from trainables.evaluation import evaluate_saved_model

    log(f"references: evaluating the target {prepared.target_dir} once on the driver (cached in {out.parent})")
    build = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    try:
        evaluate_saved_model(prepared.target_dir, cfg, oracle_path=prepared.oracle_reference, out_dir=build)
        build.rename(out)
    except OSError:
        if not _has_eval(out):  # not another process finishing first: a real failure
            raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the trials need the GPU memory the evaluation held


def _saved_oracle_eval(oracle_path: str | None) -> Path | None:
    """The saved evaluation of a user-supplied oracle: in `prepare.oracle_path` itself or its `oracle/` folder (a
    prepared directory)."""
    if not oracle_path:
        return None
    return next((d for d in (Path(oracle_path) / ORACLE, Path(oracle_path)) if _has_eval(d)), None)


def _has_eval(directory: Path) -> bool:
    from trainables.metrics.evaluate import AGGREGATES_FILE, PER_ITEM_FILE

    return (directory / AGGREGATES_FILE).is_file() and (directory / PER_ITEM_FILE).is_file()


def _file_digest(path: str | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def _fmt(v: float | None) -> str:
    return "missing" if v is None else f"{v:.4g}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
