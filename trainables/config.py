"""The configuration of one trial, as pydantic models.

A trial config is plain data (YAML in, JSON to the Ray workers): every field a sweep may search is here, with its
allowed values, so a bad value is refused by `TrialConfig.model_validate` before any process starts. Objects
that only exist at run time (models, tokenizers, process groups) are never part of it.
"""

from __future__ import annotations

import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from trainables.model.layers import LayerSpec

MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in 0 .. 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
BOOL_FOR_NUMBER = "bool_for_number"  # the pydantic error type of a boolean given for a number

_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr of at most `limit` characters, built without ever forming the whole repr.

    Error messages show the value at fault; a value can be a huge string or a structure expanded from YAML aliases,
    whose full repr would take minutes and gigabytes, so the repr is bounded level by level, then cut.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a field type: `X | Y | None` flattened, `Annotated[...]` unwrapped."""
    if typing.get_origin(annotation) is Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _takes_number_not_bool(annotation: Any) -> bool:
    """Whether a field of this type takes an int or float but no bool (a bool member would make `true` valid)."""
    members = _members(annotation)
    return bool not in members and any(m in (int, float) for m in members)


def _bool_for_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a boolean where `annotation` wants a number (directly or as a list/tuple item)."""
    if isinstance(value, bool):
        return _takes_number_not_bool(annotation)
    if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
        for member in _members(annotation):
            if typing.get_origin(member) in (list, tuple):
                items = [a for a in typing.get_args(member) if a is not Ellipsis]
                return bool(items) and all(_takes_number_not_bool(a) for a in items)
    return False


def _yaml_spelling(value: Any) -> str:
    """A value as the config file spells it (`true`, not Python's `True`), shortened."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_spelling(v) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    return short_repr(value, 40)


class StrictModel(BaseModel):
    """The base of every config model: strict where YAML and pydantic's lax mode would let a mistake through.

    Unknown keys are refused, so a typo is an error that names the key, not a silent default. Floats must be
    finite: `.inf` passes every `> 0` limit and `.nan` every comparison. A boolean is refused where a number is
    meant (lax mode turns `true` into 1), while numeric strings still convert, because PyYAML reads `1e-4` (no
    dot) as a string and users write it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # A model-level check: a field-level one may not run on the discriminator fields of the search space.
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                for key in {name, info.alias or name}:
                    if key in data and _bool_for_number(info.annotation, data[key]):
                        raise PydanticCustomError(
                            BOOL_FOR_NUMBER, "{key}: expected a number, not a boolean (got {value})",
                            {"key": key, "value": _yaml_spelling(data[key])},
                        )
        return data


def expand_home(value: str | None) -> str | None:
    """`~/x` as the user's home folder: a path from YAML is not expanded by a shell, and `~` is never meant."""
    return str(Path(value).expanduser()) if value is not None and value.startswith("~") else value


def _absolute_if_local(value: str | None) -> str | None:
    """A relative path that exists here, made absolute where the config is read (the driver).

    Ray workers run in directories of their own, so a relative `data.path` or model directory that the driver
    found would not be found by them; hub names (`locuslab/TOFU`) and absolute paths are kept as given, and
    `~` is expanded first (see `expand_home`).
    """
    value = expand_home(value)
    if value is None or Path(value).is_absolute() or not Path(value).exists():
        return value
    return str(Path(value).resolve())


class SyntheticConfig(StrictModel):
    """Sizes of the generated `synthetic-tofu` benchmark (defaults fit the 2-core CPU quickstart)."""

    num_authors: int = Field(20, ge=3, le=10_000, description="authors trained on (forget + retain), <= 10000")
    qa_per_author: int = Field(8, ge=1, le=1000, description="questions per author, <= 1000")
    forget_percent: int = Field(10, ge=1, le=50, description="share of trained authors in the forget split")
    holdout_authors: int = Field(2, ge=1, le=10_000, description="authors never trained on (MIA non-members), <= 10000")
    num_world_facts: int = Field(16, ge=0, le=100_000, description="general-knowledge questions, <= 100000")
    num_perturbed: int = Field(3, ge=3, le=100, description="wrong answers per question, <= 100")
    seed: Seed = Field(0, description="generator seed, 0 .. 2**32-1")


class DataConfig(StrictModel):
    """Which benchmark to load and how to cut it into sequences."""

    benchmark: Literal["synthetic-tofu", "tofu", "muse"] = "synthetic-tofu"
    path: str | None = Field(
        None,
        description="local directory of JSON/JSONL files, or a hub name (locuslab/TOFU, muse-bench/MUSE-News); "
        "synthetic-tofu: where to write the generated files (default: the cache directory)",
    )
    forget_split: str = Field("forget10", description="TOFU: forget01/05/10; MUSE: ignored (raw/forget)")
    retain_split: str = Field("retain90", description="TOFU: retain90/95/99; MUSE: retain1 or retain2")
    holdout_split: str | None = Field(
        "holdout10",
        description="TOFU: holdout01/05/10, or null to run without MIA and PrivLeak (a configured split that is "
        "missing is an error); synthetic-tofu: ignored (its generated holdout); MUSE: ignored (raw/holdout)",
    )
    max_length: int = Field(128, ge=8, le=32768, description="tokens per sequence, longer ones are truncated")
    max_truncated: float = Field(
        0.05, ge=0, le=1,
        description="largest share of the rows of any split that max_length may truncate; more is refused before "
        "compute (1.0 allows any)",
    )
    forget_limit: int | None = Field(
        None, ge=1, description="keep only the first N forget rows (a deterministic subset for CPU runs)",
    )
    retain_limit: int | None = Field(
        None, ge=1,
        description="keep N retain rows: the rows of the retain questions TOFU evaluates (retain_perturbed) first, "
        "then the first others in file order",
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    idk_file: str | None = Field(
        None, description="dpo: the answers it prefers on the forget questions, a UTF-8 text file with one answer a "
        "line; null: the built-in list (trainables/data/idk.py)",
    )

    @field_validator("path", "idk_file")
    @classmethod
    def _local_path(cls, v: str | None) -> str | None:
        return _absolute_if_local(v)


class TinyModelConfig(StrictModel):
    """Shape of the `tiny-llama` preset: a LlamaConfig small enough to train on a laptop CPU in seconds."""

    num_layers: int = Field(8, ge=1, le=64, description="decoder layers, <= 64")
    hidden_size: int = Field(64, ge=8, le=4096, description="<= 4096, a multiple of num_heads")
    num_heads: int = Field(4, ge=1, le=64, description="attention heads, <= 64")
    intermediate_size: int = Field(128, ge=8, le=16384, description="MLP width, <= 16384")
    vocab_size: int = Field(
        1024, ge=300, le=65536, description="size of the BPE tokenizer trained on the benchmark text, <= 65536",
    )
    seed: Seed = Field(0, description="weight initialisation seed, 0 .. 2**32-1")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads}): "
                             "each head takes hidden_size / num_heads dimensions")
        return self


class LoraConfig(StrictModel):
    """Optional LoRA adapters (peft) instead of full fine-tuning."""

    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ModelConfig(StrictModel):
    """The model to unlearn from."""

    name_or_path: str = Field("tiny-llama", description="'tiny-llama', a local directory or an HF hub name")
    dtype: Literal["fp32", "bf16"] = "fp32"
    trust_remote_code: bool = False
    lora: LoraConfig | None = None
    tiny: TinyModelConfig = TinyModelConfig()

    @field_validator("name_or_path")
    @classmethod
    def _local_path(cls, v: str) -> str:
        return v if v == "tiny-llama" else _absolute_if_local(v)


class MethodConfig(StrictModel):
    """Base unlearning method and its hyperparameters.

    A hyperparameter left as None takes the method's default (open-unlearning's); one the method does not use is
    refused by `trainables.objectives.resolve_method`, which knows each method's parameters.
    """

    name: str = Field("simnpo", description="gradascent, graddiff, npo, simnpo, undial, pdu, wga, satimp, ceu, rmu, "
                      "dpo")
    retain_loss: Literal["nll", "kl", "embed_diff"] | None = Field(
        None, description="nll, kl, or embed_diff (RMU: the layer's outputs kept at the frozen model's); null: the "
        "method's default (embed_diff for rmu, nll for the others)",
    )
    gamma: float | None = Field(None, ge=0, description="weight of the forget loss")
    alpha: float | None = Field(None, ge=0, description="weight of the retain loss (PDU: initial dual variable)")
    beta: float | None = Field(
        None, gt=0, description="NPO / SimNPO inverse temperature; UNDIAL logit shift; WGA weight exponent",
    )
    delta: float | None = Field(None, description="SimNPO margin")
    eps: float | None = Field(None, ge=0, description="PDU retain-loss bound")
    eta: float | None = Field(None, gt=0, description="PDU dual step size")
    beta1: float | None = Field(None, ge=0, description="SatImp saturation exponent (token weight p^beta1)")
    beta2: float | None = Field(None, ge=0, description="SatImp importance exponent (token weight (1 - p)^beta2)")
    ignore_first_n_answer_tokens: int | None = Field(
        None, ge=0, description="CE-U: labelled tokens at the start of each forget sequence left unscored",
    )
    steering_coeff: float | None = Field(None, gt=0, description="RMU: length c of the forget target c * u")
    direction_seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="RMU: seed of the fixed random unit direction u, 0 .. 2**32-1",
    )
    layer: str | int | None = Field(
        None, description="RMU: the decoder layer whose outputs it steers, as clreg.layer writes one ('last-k' or a "
        "0-based index)",
    )
    trainable: str | None = Field(
        None, description="RMU: regular expression that parameter names must fully match to be trained (default "
        "'.*', every parameter, as open-unlearning; WMDP's original: the MLP down-projections of layers l-2..l)",
    )

    @field_validator("layer")
    @classmethod
    def _layer_syntax(cls, v: str | int | None) -> str | int | None:
        return None if v is None else LayerSpec.parse(v).value

    @field_validator("trainable")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as error:
                raise ValueError(f"not a regular expression ({error})") from None
        return v


class CLRegConfig(StrictModel):
    """The contrastive regularizer: total = base + lambda * L_CL at one target layer."""

    enabled: bool = True
    tau: float = Field(0.5, gt=0, description="temperature, > 0")
    lam: float = Field(1.0, ge=0, alias="lambda", description="weight lambda, >= 0")
    layer: str | int = Field(
        "last-1",
        description="'last-k' (k >= 1, Last-1 = the final decoder layer's output after the final norm) "
        "or an absolute 0-based decoder layer index",
    )
    form: Literal["dpo", "infonce"] = "dpo"
    symmetric: bool = False
    positives: Literal["dropout", "paraphrase"] = "dropout"
    dropout: float = Field(0.1, ge=0, le=0.5, description="dropout rate of the positive view")

    @field_validator("layer")
    @classmethod
    def _layer_syntax(cls, v: str | int) -> str | int:
        """Checked here without a model; the depth is checked where the model is known (`LayerSpec.index`)."""
        return LayerSpec.parse(v).value

    @property
    def active(self) -> bool:
        """Whether training adds `lambda * L_CL`: enabled with a weight above zero. The one place this is decided
        (the objective, the worker's forwards, the trial's tags and record all ask it)."""
        return self.enabled and self.lam > 0


class TrainConfig(StrictModel):
    """DeepSpeed engine and Ray Train scaling settings of one trial."""

    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers, <= 1024")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage 0, 1, 2 or 3")
    micro_batch_size: int = Field(4, ge=1, description="forget (and retain) sequences per worker per micro-step")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(3, ge=1, le=10_000, description="<= 10000")
    seed: Seed = Field(0, description="training seed, 0 .. 2**32-1")
    max_failures: int = Field(0, ge=0, description="worker-group restarts from the newest checkpoint")


class EvalConfig(StrictModel):
    """When and how each trial evaluates itself."""

    every: int = Field(0, ge=0, description="evaluate every N epochs as well as at the end (0: end only)")
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int | None = Field(
        None, ge=1,
        description="greedy generation length for ROUGE; None: open-unlearning's per benchmark (TOFU 200, MUSE "
        "verbmem 128, MUSE knowmem 32)",
    )
    definitions: Literal["open-unlearning", "exact"] = Field(
        "open-unlearning",
        description="open-unlearning: its formulas with their epsilons and edge cases, comparable with published "
        "tables; exact: log-space forms that stay exact where probabilities underflow",
    )
    layer_profile: bool = Field(True, description="entanglement at every layer, not only the target layer")
    keep_epoch_models: bool = Field(
        False, description="keep each mid-run evaluated model as epoch-<e>/ beside final_model (a sweep with "
        "search.candidates: epochs sets it: those models are its front's candidates)")


class PrepareConfig(StrictModel):
    """The TOFU protocol's fine-tuning of the target (forget + retain) and oracle (retain only) models."""

    enabled: bool = Field(True, description="False: `model` is already the target (e.g. a released TOFU model)")
    oracle_path: str | None = Field(None, description="with enabled=False: the retain-only model, if any")
    oracle_logs: str | None = Field(
        None,
        description="an open-unlearning TOFU_EVAL.json / MUSE_EVAL.json of a retain model: the oracle reference of "
        "forget quality and PrivLeak (with enabled=False no oracle is trained)",
    )
    epochs: int = Field(30, ge=1, le=10_000, description="<= 10000")
    lr: float = Field(3e-3, gt=0)
    micro_batch_size: int = Field(16, ge=1)
    cache_dir: str = Field(".clreg/cache", description="prepared models and data, keyed by a hash of their inputs")

    @field_validator("oracle_path", "oracle_logs", "cache_dir")
    @classmethod
    def _paths_home(cls, v: str | None) -> str | None:
        return expand_home(v)

    @model_validator(mode="after")
    def _one_oracle_reference(self) -> PrepareConfig:
        # Both name the oracle reference trials are scored against; with both, one would be ignored without a word.
        if self.oracle_path and self.oracle_logs:
            raise ValueError("oracle_path and oracle_logs both give the oracle reference; set one of them (the "
                             "retain model's folder, or its open-unlearning log)")
        return self


# The evaluation metrics an attack measures: each has one value per forget item, so it can be taken on the attack's
# held-out half of the forget set (`trainables.attacks.split`).
ATTACK_METRICS = ("forget_prob", "forget_rouge", "forget_truth_ratio", "extraction_strength", "exact_memorization")
BIT_WIDTHS = (2, 3, 4, 8, 16)  # of the quantization attack; 16 leaves the weights as they are


class RelearnAttackConfig(StrictModel):
    """Fine-tuning a copy of the unlearned model on half A of the forget set (or on retain rows: the benign
    variant), then measuring the forget metrics on the other half B."""

    enabled: bool = True
    data: Literal["forget", "retain"] = Field(
        "forget", description="forget: relearn on half A of the forget set; retain: on as many retain rows (benign)")
    steps: int | None = Field(None, ge=1, le=100_000,
                              description="optimizer steps; None: one pass over the attack rows")
    lr: float | None = Field(
        None, gt=0, description="None: prepare.lr, the rate the target learned its forget set at (one value for "
        "every trial, whatever train.lr a trial searched, so trials and the oracle face the same attack)")
    micro_batch_size: int = Field(4, ge=1)
    split_seed: Seed = Field(0, description="seed of the A/B split of the forget set, 0 .. 2**32-1")


class QuantizeAttackConfig(StrictModel):
    """Round-to-nearest, group-wise weight quantization of the unlearned model, then the forget metrics again."""

    enabled: bool = True
    bits: list[Literal[BIT_WIDTHS]] = Field([8, 4], min_length=1,  # type: ignore[valid-type]
                                                description="bit widths, each 2, 3, 4, 8 or 16 (16: unchanged)")
    group_size: int = Field(128, ge=1, description="consecutive input weights sharing one scale and zero point")


class AttackConfig(StrictModel):
    """Attacks that test whether forgetting is erasure or suppression (README "Attacks")."""

    when: Literal["final", "front", "never"] = Field(
        "never",
        description="final: every trial after its evaluation; front: the Pareto front's trials after the sweep; "
        "never")
    metric: Literal[ATTACK_METRICS] = Field(  # type: ignore[valid-type]
        "forget_prob", description="the forget metric recovery, R and Q are computed from")
    metrics: list[Literal[ATTACK_METRICS]] = Field(  # type: ignore[valid-type]
        ["forget_prob", "forget_rouge"], min_length=1, description="forget metrics measured after each attack")
    relearn: RelearnAttackConfig = RelearnAttackConfig()
    quantize: QuantizeAttackConfig = QuantizeAttackConfig()

    @model_validator(mode="after")
    def _scored_metric_is_measured(self) -> AttackConfig:
        if self.metric not in self.metrics:
            raise ValueError(f"attack.metric {self.metric!r} must be one of attack.metrics {self.metrics}")
        if self.when != "never" and not (self.relearn.enabled or self.quantize.enabled):
            raise ValueError(f"attack.when is {self.when!r} but both attack.relearn and attack.quantize are "
                             "disabled")
        return self

    @property
    def active(self) -> bool:
        return self.when != "never"


class TrialConfig(StrictModel):
    """Everything that determines one unlearning trial."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    clreg: CLRegConfig = CLRegConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    prepare: PrepareConfig = PrepareConfig()
    attack: AttackConfig = AttackConfig()
    output_dir: str = Field(".clreg/runs", description="where `run` writes checkpoints, the final model, metrics")

    @field_validator("output_dir")
    @classmethod
    def _output_home(cls, v: str) -> str:
        return expand_home(v)
