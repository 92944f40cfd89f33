"""Checks that run before any process starts: a broken config fails in seconds, not after an hour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import ATTACK_METRICS, ModelConfig, TrialConfig
from trainables.data.idk import idk_answers
from trainables.data.loading import load_benchmark
from trainables.data.optional_sets import OptionalSet, absent_sets
from trainables.data.schema import Benchmark, require_paraphrases
from trainables.data.truncation import SplitLengths, check_truncation, split_lengths
from trainables.metrics.oracle_logs import MIN_K, OracleLog, OracleLogError, expected_log_items, read_oracle_logs
from trainables.model.layers import resolve_layer
from trainables.model.loading import (
    ModelError,
    check_lora_targets,
    check_model_folder,
    check_model_source,
    hub_offline,
    hub_snapshot,
    load_tokenizer,
    meta_model,
)
from trainables.model.tiny import TINY_PRESET, tiny_llama_config, tokenizer_texts, train_tokenizer
from trainables.model.trainable import train_only
from trainables.objectives import resolve_method
from trainables.report_keys import QUANT_Q, RELEARN_R, RELEARN_RECOVERY, ROBUSTNESS


def check_model(model: ModelConfig, trainable: str | None = None) -> int:
    """The configured model checked without reading a weight; returns its number of decoder layers.

    A local folder: its files (`check_model_folder`). A hub name: the local Hugging Face cache first, then one short
    request. Then the architecture is built on the meta device and the LoRA targets and the method's pattern of
    trained parameters (`trainable`, RMU's `method.trainable`) are looked up in it. The `tiny-llama` preset is built
    by `prepare`, so only those are checked.

    Raises:
        ModelError naming the field, the folder or file, and what to fix; ValueError when `trainable` names none of
        the parameters the trial would train.
    """
    field = "model.name_or_path"
    if model.name_or_path == TINY_PRESET:
        if model.lora is not None or trainable is not None:
            shape = tiny_llama_config(model.tiny, model.tiny.vocab_size)
            _check_trained(meta_model(shape, "model.tiny", False), model, trainable)
        return model.tiny.num_layers
    check_model_source(model.name_or_path)
    folder = Path(model.name_or_path).expanduser()
    if folder.is_dir():
        conf = check_model_folder(folder, field, model.trust_remote_code)
    else:
        snapshot = hub_snapshot(model.name_or_path, field)
        # Offline, a cached model must be whole; online, the trial downloads what the cache lacks.
        conf = (check_model_folder(snapshot, field, model.trust_remote_code, files=hub_offline()) if snapshot
                else _hub_config(model))
    built = meta_model(conf, f"{field} {model.name_or_path!r}", model.trust_remote_code)
    _check_trained(built, model, trainable)
    depth = getattr(conf.get_text_config(), "num_hidden_layers", None)
    if not isinstance(depth, int):
        raise ModelError(f"{field} {model.name_or_path!r}: its config.json gives no num_hidden_layers, which CLReg's "
                         "target layer and the metrics count")
    return depth


def _check_trained(built, model: ModelConfig, trainable: str | None) -> None:
    """The LoRA targets exist in `built` (a meta-device model), and `trainable` matches some parameter a trial
    trains: with LoRA the adapters' names are not known here, so the pattern is then checked in the trial."""
    if model.lora is not None:
        check_lora_targets(built, model.lora)
    elif trainable is not None:
        train_only(built, trainable)


def _hub_config(model: ModelConfig):
    """The config of a hub model that is not cached, which the hub just said it has (config.json is downloaded)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model.name_or_path, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"model.name_or_path {model.name_or_path!r}: its config.json does not load "
                         f"({type(e).__name__}: {str(e).strip()[:300]})") from None


def check_oracle_dir(path: str) -> None:
    """`prepare.oracle_path` must hold what the sweep reads from it: the oracle reference trials are scored against
    (`oracle_reference.json`) and/or the oracle's saved evaluation (in it or its `oracle/` folder), each readable.

    Raises:
        ValueError naming the field, the file and what is wrong with it.
    """
    from orchestrator.prepare import ORACLE_REFERENCE_FILE
    from trainables.evaluation import load_eval
    from trainables.metrics.evaluate import AGGREGATES_FILE, PER_ITEM_FILE
    from trainables.metrics.registry import OracleReference

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"prepare.oracle_path {path!r} is not a directory")
    reference = folder / ORACLE_REFERENCE_FILE
    if reference.is_file():
        try:
            OracleReference.from_json(reference.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"prepare.oracle_path: {reference} is not an oracle reference (forget_truth_ratios, "
                             f"mia_min_k_auc): {type(e).__name__}: {str(e)[:200]}") from None
    saved = [d for d in (folder / "oracle", folder) if (d / AGGREGATES_FILE).is_file() or (d / PER_ITEM_FILE).is_file()]
    for d in saved[:1]:
        try:
            load_eval(d)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"prepare.oracle_path: the saved evaluation in {d} does not read ({AGGREGATES_FILE} and "
                             f"{PER_ITEM_FILE}): {type(e).__name__}: {str(e)[:200]}") from None
    if not reference.is_file() and not saved:
        raise ValueError(f"prepare.oracle_path {path}: holds neither {ORACLE_REFERENCE_FILE} nor a saved evaluation "
                         f"({AGGREGATES_FILE} and {PER_ITEM_FILE}, in it or its oracle/ folder); allowed: a folder "
                         "`prepare` or `eval --out` wrote for the retain-only model")


@dataclass(frozen=True)
class DataCheck:
    """What preflight established about the data: sequence lengths per split and the optional sets it lacks.

    Attributes:
        max_length: `data.max_length` the counts are against.
        lengths: Per split, from `trainables.data.truncation.split_lengths`.
        counted_with: The tokenizer the lengths were counted with, in words.
        absent: Optional sets the benchmark has no rows of, with the metrics missing without them.
        absent_why: Per absent set, why (e.g. `data.holdout_split: null`).
    """

    max_length: int
    lengths: list[SplitLengths]
    counted_with: str
    absent: dict[str, OptionalSet]
    absent_why: dict[str, str]

    def summary_lines(self) -> list[str]:
        """The data part of `validate`'s summary: rows truncated per split, then each absent set."""
        lines = [f"data: rows truncated at data.max_length={self.max_length} (counted with {self.counted_with}):"]
        lines += [f"  {s.describe(self.max_length)}" for s in self.lengths]
        for name, spec in self.absent.items():
            note = f"; {spec.note}" if spec.note else ""
            lines.append(f"absent: {name} ({self.absent_why[name]}): {', '.join(spec.metrics)} will be missing{note}")
        return lines


@dataclass(frozen=True)
class Checked:
    """A trial config that passed preflight: its loaded benchmark and what was found out about the data."""

    bench: Benchmark
    data: DataCheck
    num_layers: int  # decoder layers of the model, from its config
    oracle_log: OracleLog | None = None  # `prepare.oracle_logs` as read, when set


def preflight(cfg: TrialConfig) -> Benchmark:
    """`check_trial`, returning the loaded benchmark."""
    return check_trial(cfg).bench


def check_trial(cfg: TrialConfig) -> Checked:
    """Validate method, model (files, architecture, LoRA targets), `prepare.oracle_path`, data, target layer and
    sequence lengths of `cfg`.

    Raises a ValueError subclass whose message names the field and the allowed values.
    """
    method = resolve_method(cfg.method)
    num_layers = check_model(cfg.model, method.trainable)
    if method.layer is not None:
        resolve_layer(method.layer, num_layers, "method.layer")
    if method.spec.reads_alternate:
        idk_answers(cfg.data.idk_file)
    if cfg.prepare.oracle_path:
        check_oracle_dir(cfg.prepare.oracle_path)
    bench = load_benchmark(cfg.data, Path(cfg.prepare.cache_dir))
    oracle_log = check_oracle_logs(cfg.prepare.oracle_logs, bench) if cfg.prepare.oracle_logs else None
    if cfg.clreg.enabled:
        resolve_layer(cfg.clreg.layer, num_layers)
    if cfg.clreg.enabled and cfg.clreg.positives == "paraphrase":
        require_paraphrases(bench)
    if cfg.attack.active:
        check_attack(cfg, bench)
    return Checked(bench, check_data(cfg, bench), num_layers, oracle_log)


def check_attack(cfg: TrialConfig, bench: Benchmark) -> None:
    """The attacks measure TOFU's forget metrics, the relearning attack on half of the forget set.

    Raises:
        ValueError naming `attack.when` and what the benchmark lacks.
    """
    if bench.family != "tofu":
        raise ValueError(f"attack.when {cfg.attack.when!r}: the attacks measure TOFU's forget metrics "
                         f"({', '.join(cfg.attack.metrics)}), and data.benchmark {cfg.data.benchmark!r} is a "
                         f"{bench.family} benchmark; allowed: attack.when never, or a TOFU-style benchmark")
    if cfg.attack.relearn.enabled and len(bench.forget) < 2:
        raise ValueError(f"attack.relearn: the forget set has {len(bench.forget)} row(s); the relearning attack "
                         "needs 2 or more (one half to relearn on, one to measure); allowed: attack.relearn.enabled "
                         "false, or a larger forget split")


def check_attack_objective(field: str, metric: str, cfg: TrialConfig) -> None:
    """An attack metric as an objective: the trial must measure it before it ends.

    Raises:
        ValueError naming `field`, the attack setting that keeps `metric` from being measured and its fix.
    """
    a = cfg.attack
    if a.when != "final":
        raise ValueError(f"{field} {metric} is measured by an attack, and base.attack.when is {a.when!r}; allowed: "
                         "base.attack.when final (a front attack runs after the sweep, too late for the search)")
    family, _, name = metric.partition("/")
    quantized = metric == QUANT_Q or (family.startswith("quant") and family != "quant")
    attack, enabled = ("quantize", a.quantize.enabled) if quantized else ("relearn", a.relearn.enabled)
    if not enabled:
        raise ValueError(f"{field} {metric} needs base.attack.{attack}.enabled true")
    if family.removeprefix("quant").isdigit() and int(family.removeprefix("quant")) not in a.quantize.bits:
        raise ValueError(f"{field} {metric}: {family.removeprefix('quant')} bits is not in base.attack.quantize.bits "
                         f"{a.quantize.bits}")
    measured = name.removesuffix("_before")
    if measured in ATTACK_METRICS and measured not in a.metrics:
        raise ValueError(f"{field} {metric}: {measured} is not in base.attack.metrics {a.metrics}")
    if metric == ROBUSTNESS and not a.relearn.enabled:
        raise ValueError(f"{field} {metric} combines relearn/R with quant/Q and needs base.attack.relearn.enabled")
    if metric in (RELEARN_R, RELEARN_RECOVERY, ROBUSTNESS) and not (cfg.prepare.enabled or cfg.prepare.oracle_path):
        raise ValueError(f"{field} {metric} compares with the oracle model under the same attack; allowed: "
                         "base.prepare.enabled true or base.prepare.oracle_path (an oracle log holds no model to "
                         "attack)")


def preflight_tokenizer(cfg: TrialConfig, bench: Benchmark) -> tuple[Any, str]:
    """The tokenizer trials will encode `bench` with, and its description, to count lengths before any compute.

    `tiny-llama`'s tokenizer is the one `prepare` trains on the benchmark text; the same training here is
    deterministic and in memory (about 1 s on real TOFU's 16.7k strings), cheaper than importing `prepare` to find
    a cached copy, whose key also covers `data.max_length`, the field a truncation refusal asks to change.

    Raises:
        ModelError: the configured model's tokenizer cannot be loaded.
    """
    if cfg.model.name_or_path == TINY_PRESET:
        tokenizer = train_tokenizer(tokenizer_texts(bench), cfg.model.tiny.vocab_size)
        return tokenizer, f"the {TINY_PRESET} tokenizer prepare trains on the benchmark text"
    try:
        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"model.name_or_path {cfg.model.name_or_path!r}: cannot load its tokenizer to count the "
                         f"rows data.max_length truncates ({type(e).__name__}: {e})") from None
    return tokenizer, f"the tokenizer of {cfg.model.name_or_path}"


def check_data(cfg: TrialConfig, bench: Benchmark) -> DataCheck:
    """Count the rows `data.max_length` truncates per split (refusing above `data.max_truncated`) and list the
    optional sets `bench` lacks.

    Raises:
        TruncationError: a split is truncated more than `data.max_truncated` allows.
        ModelError: the tokenizer cannot be loaded.
    """
    tokenizer, counted_with = preflight_tokenizer(cfg, bench)
    lengths = split_lengths(tokenizer, bench)
    check_truncation(lengths, cfg.data.max_length, cfg.data.max_truncated, counted_with)
    absent = absent_sets(bench)
    why = {name: "not in the data" for name in absent}
    if "holdout" in absent and cfg.data.benchmark == "tofu" and cfg.data.holdout_split is None:
        why["holdout"] = "data.holdout_split: null"
    return DataCheck(cfg.data.max_length, lengths, counted_with, absent, why)


def check_oracle_logs(path: str, bench: Benchmark) -> OracleLog:
    """`prepare.oracle_logs` read as the oracle reference of `bench`, or an `OracleLogError` naming field, file, key.

    For TOFU the log's forget truth ratios must be one per forget item that forget_truth_ratio scores; for MUSE the
    log must hold the min-k AUC, the only oracle number MUSE's metrics use.
    """
    try:
        log = read_oracle_logs(path, expected_log_items(bench))
    except OracleLogError as e:
        raise OracleLogError(f"prepare.oracle_logs: {e}") from None
    if bench.family == "muse" and log.reference.mia_min_k_auc is None:
        raise OracleLogError(f"prepare.oracle_logs: {path}: no {MIN_K}: MUSE's oracle reference is the retain "
                             f"model's min-k MIA AUC (PrivLeak)")
    return log
