"""The configuration of one trial, as pydantic models.

A trial config is plain data (YAML in, JSON to the Ray workers): every field a sweep may search is here, with its
allowed values, so a bad value is refused by `TrialConfig.model_validate` before any process starts. Objects
that only exist at run time (models, tokenizers, process groups) are never part of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """Refuses unknown keys, so a typo in a config file is an error that names the key, not a silent default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _absolute_if_local(value: str | None) -> str | None:
    """A relative path that exists here, made absolute where the config is read (the driver).

    Ray workers run in directories of their own, so a relative `data.path` or model directory that the driver
    found would not be found by them; hub names (`locuslab/TOFU`) and absolute paths are kept as given.
    """
    if value is None or Path(value).is_absolute() or not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().resolve())


class SyntheticConfig(StrictModel):
    """Sizes of the generated `synthetic-tofu` benchmark (defaults fit the 2-core CPU quickstart)."""

    num_authors: int = Field(20, ge=3, description="authors trained on (forget + retain)")
    qa_per_author: int = Field(8, ge=1)
    forget_percent: int = Field(10, ge=1, le=50, description="share of trained authors in the forget split")
    holdout_authors: int = Field(2, ge=1, description="authors never trained on (MIA non-members)")
    num_world_facts: int = Field(16, ge=0)
    num_perturbed: int = Field(3, ge=3, description="wrong answers per question")
    seed: int = 0


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

    @field_validator("path")
    @classmethod
    def _local_path(cls, v: str | None) -> str | None:
        return _absolute_if_local(v)


class TinyModelConfig(StrictModel):
    """Shape of the `tiny-llama` preset: a LlamaConfig small enough to train on a laptop CPU in seconds."""

    num_layers: int = Field(8, ge=1)
    hidden_size: int = Field(64, ge=8)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int = Field(1024, ge=300, description="size of the BPE tokenizer trained on the benchmark text")
    seed: int = 0


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

    name: str = Field("simnpo", description="gradascent, graddiff, npo, simnpo, undial, pdu")
    retain_loss: Literal["nll", "kl"] = "nll"
    gamma: float | None = Field(None, ge=0, description="weight of the forget loss")
    alpha: float | None = Field(None, ge=0, description="weight of the retain loss (PDU: initial dual variable)")
    beta: float | None = Field(None, gt=0, description="NPO / SimNPO inverse temperature; UNDIAL logit shift")
    delta: float | None = Field(None, description="SimNPO margin")
    eps: float | None = Field(None, ge=0, description="PDU retain-loss bound")
    eta: float | None = Field(None, gt=0, description="PDU dual step size")


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
        if isinstance(v, int):
            if v < 0:
                raise ValueError("an absolute layer index must be >= 0 (use 'last-k' to count from the top)")
            return v
        if not (v.startswith("last-") and v[5:].isdigit() and int(v[5:]) >= 1):
            raise ValueError(f"layer must be 'last-k' with k >= 1 or a 0-based index, got {v!r}")
        return v


class TrainConfig(StrictModel):
    """DeepSpeed engine and Ray Train scaling settings of one trial."""

    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage 0, 1, 2 or 3")
    micro_batch_size: int = Field(4, ge=1, description="forget (and retain) sequences per worker per micro-step")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(3, ge=1)
    seed: int = 0
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


class PrepareConfig(StrictModel):
    """The TOFU protocol's fine-tuning of the target (forget + retain) and oracle (retain only) models."""

    enabled: bool = Field(True, description="False: `model` is already the target (e.g. a released TOFU model)")
    oracle_path: str | None = Field(None, description="with enabled=False: the retain-only model, if any")
    oracle_logs: str | None = Field(
        None,
        description="an open-unlearning TOFU_EVAL.json / MUSE_EVAL.json of a retain model: the oracle reference of "
        "forget quality and PrivLeak (with enabled=False no oracle is trained)",
    )
    epochs: int = Field(30, ge=1)
    lr: float = Field(3e-3, gt=0)
    micro_batch_size: int = Field(16, ge=1)
    cache_dir: str = Field(".clreg/cache", description="prepared models and data, keyed by a hash of their inputs")


class TrialConfig(StrictModel):
    """Everything that determines one unlearning trial."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    clreg: CLRegConfig = CLRegConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    prepare: PrepareConfig = PrepareConfig()
    output_dir: str = Field(".clreg/runs", description="where `run` writes checkpoints, the final model, metrics")
