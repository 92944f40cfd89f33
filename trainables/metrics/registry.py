"""The contract of a metric: a plain function `(EvalContext) -> MetricResult`, registered by name in `METRICS`.

A metric reads its data and model outputs from the `EvalContext`, which memoises every forward pass, generation and
metric result of one evaluation. So metrics that build on each other share work instead of repeating it, as
open-unlearning's `pre_compute` does: forget quality <- forget truth ratio <- paraphrased / perturbed NLLs; model
utility <- retain / real-authors / world-facts Prob, ROUGE, truth ratio; privleak <- mia_min_k <- answer scores;
the three entanglement measures <- one entanglement computation <- representations.

A metric whose data set is absent, or that needs an oracle reference when none was given, is MISSING: its value is
None, never a stand-in 0 or 1, and its `reason` says why (`missing`), so a report can tell the user what to supply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from trainables.config import EvalConfig
from trainables.data.schema import Benchmark, Example
from trainables.metrics import scoring
from trainables.registry import Registry
from trainables.report_keys import LOSS_TERMS, TIMINGS, loss_metric

FAMILIES = ("tofu", "muse")


@dataclass(frozen=True)
class MetricResult:
    """What every metric returns.

    Attributes:
        value: The aggregate (None = MISSING: data set or oracle absent).
        per_item: Per-item values in the order of the data set the metric reads, or None where there are none
            (AUCs, forget quality, model utility).
        reason: Why the value is MISSING; or, for a value computed from only some of its inputs (model utility
            without some of its parts), which were left out and why. None otherwise.
    """

    value: float | None
    per_item: list | None = None
    reason: str | None = None


NO_ORACLE = "no oracle reference: set prepare.enabled, prepare.oracle_path or prepare.oracle_logs"


def missing(reason: str) -> MetricResult:
    """A MISSING result that says why (the data set, oracle or setting it would need)."""
    return MetricResult(None, None, reason)


@dataclass
class OracleReference:
    """What the retain-only ("oracle") model's own evaluation contributes to the metrics of an unlearned model.

    Attributes:
        forget_truth_ratios: its per-item forget truth ratios (forget quality); empty when it had none.
        mia_min_k_auc: its min-k MIA AUC on forget vs holdout (privleak), None when it had none.
    """

    forget_truth_ratios: list[float]
    mia_min_k_auc: float | None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> OracleReference:
        data = json.loads(text)
        return cls(forget_truth_ratios=[float(x) for x in data["forget_truth_ratios"]],
                   mia_min_k_auc=data["mia_min_k_auc"])


@dataclass
class EvalContext:
    """Everything a metric may read, with a memo shared by all metrics of one evaluation.

    Data sets are named by split: "forget", "retain", "holdout" or a key of `benchmark.eval_sets`.

    Attributes:
        model: HF causal LM (optionally peft-wrapped).
        tokenizer: its tokenizer.
        benchmark: the data.
        cfg: batch size, generation length, metric definitions, whether to profile every layer.
        target_layer: 0-based decoder layer whose output CLReg shapes (`trainables.model.layers`).
        max_length: tokens per sequence.
        oracle: the retain-only model's reference numbers, or None.
        memo: cache of intermediate results, keyed by tuples; filled lazily.
    """

    model: Any
    tokenizer: Any
    benchmark: Benchmark
    cfg: EvalConfig
    target_layer: int
    max_length: int
    oracle: OracleReference | None = None
    memo: dict[tuple, Any] = field(default_factory=dict)

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """`memo[key]`, computed by `compute()` the first time it is asked for."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def metric(self, name: str) -> MetricResult:
        """The result of metric `name`, computed once per evaluation (metrics call this for their dependencies)."""
        return self.cached(("metric", name), lambda: METRICS.get(name)(self))

    def examples(self, split: str) -> list[Example]:
        """The examples of `split`; empty when the benchmark does not have it."""
        builtin = {"forget": self.benchmark.forget, "retain": self.benchmark.retain,
                   "holdout": self.benchmark.holdout}
        return builtin[split] if split in builtin else self.benchmark.eval_sets.get(split, [])

    def source(self) -> str:
        """Where the benchmark was read from, for MISSING reasons (its name when it has no source)."""
        return self.benchmark.source or self.benchmark.name

    def retain_split(self) -> str:
        """The retain set evaluated on: TOFU's `retain_perturbed` (a subset of retain with paraphrased / perturbed
        answers) when present, else the retain training set."""
        return "retain_perturbed" if self.examples("retain_perturbed") else "retain"

    def answer_scores(self, split: str) -> scoring.ItemScores:
        """Teacher-forced scores of the answers of `split`, token-level fields per `cfg.definitions`."""
        return self.cached(("answers", split), lambda: scoring.score_answers(
            self.model, self.tokenizer, self.examples(split), self.max_length, self.cfg.batch_size,
            definitions=self.cfg.definitions))

    def answer_texts(self, split: str) -> list[str]:
        """The answers of `split` as their label tokens decode (`scoring.answer_texts`)."""
        return self.cached(("answer_texts", split), lambda: scoring.answer_texts(
            self.tokenizer, self.examples(split), self.max_length))

    def rouge_references(self, split: str) -> list[str]:
        """What the generations of `split` are scored against, per `cfg.definitions` (`scoring.rouge_references`)."""
        return scoring.rouge_references(self.tokenizer, self.examples(split), self.max_length,
                                        definitions=self.cfg.definitions)

    def alternative_nll(self, split: str, which: str) -> np.ndarray:
        """`scoring.score_alternatives` of `split`: `[N]` paraphrased or `[N, K]` NaN-padded perturbed NLLs."""
        return self.cached(("alternatives", split, which), lambda: scoring.score_alternatives(
            self.model, self.tokenizer, self.examples(split), which, self.max_length, self.cfg.batch_size))

    def generations(self, split: str, default_max_new_tokens: int, stop_strings: tuple[str, ...] = ()) -> list[str]:
        """Greedy answers to the prompts of `split`.

        Args:
            split: the data set.
            default_max_new_tokens: the benchmark's own generation length (open-unlearning's), used unless
                `cfg.max_new_tokens` sets one for every set.
            stop_strings: where the benchmark cuts an answer (MUSE knowmem), kept whatever the length.
        """
        length = self.cfg.max_new_tokens if self.cfg.max_new_tokens is not None else default_max_new_tokens
        return self.cached(("generations", split, length, stop_strings), lambda: scoring.generate_answers(
            self.model, self.tokenizer, self.examples(split), length, self.cfg.batch_size, self.max_length,
            stop_strings))

    def layers(self) -> list[int]:
        """Layers whose representations are collected: all of them with `cfg.layer_profile`, else the target."""
        if self.cfg.layer_profile:
            return list(range(self.model.config.num_hidden_layers))
        return [self.target_layer]

    def representations(self, split: str) -> dict[int, np.ndarray]:
        """layer -> `[N, D]` unit representations of `split`, every layer of `layers()` from one pass."""
        return self.cached(("representations", split), lambda: scoring.representations(
            self.model, self.tokenizer, self.examples(split), self.layers(), self.max_length, self.cfg.batch_size))


MetricFn = Callable[[EvalContext], MetricResult]
METRICS: Registry[MetricFn] = Registry("metric")
DEFAULTS: dict[str, list[str]] = {family: [] for family in FAMILIES}

MetricKind = Literal["evaluation", "training_loss", "timing", "attack"]
Direction = Literal["max", "min"]


@dataclass(frozen=True)
class MetricInfo:
    """What the sweep driver knows of a metric a trial reports before any trial runs, so that it can refuse an
    objective no trial will report, or one that cannot be computed without the oracle.

    Attributes:
        kind: "evaluation" (a function in `METRICS`), "training_loss" (an epoch's loss term), "timing" or
            "attack" (measured by `attack.when: final` after the trial's evaluation, `trainables.attacks`).
        direction: "max" or "min" where higher or lower is better for unlearning; None where neither is (an MIA
            AUC is best at the oracle's value, PrivLeak at 0, a per-layer profile is not a number).
        needs_oracle: MISSING without the oracle reference `prepare` caches or an open-unlearning log supplies.
    """

    kind: MetricKind
    direction: Direction | None = None
    needs_oracle: bool = False


# Every metric name a trial can report: the evaluation metrics (added by `metric`), the loss terms and timings.
REPORTED: Registry[MetricInfo] = Registry("reported metric")
for _term in LOSS_TERMS:
    REPORTED.register(loss_metric(_term))(MetricInfo("training_loss", "min"))
for _timing in TIMINGS:
    REPORTED.register(_timing)(MetricInfo("timing", "min"))


def metric(name: str, families: tuple[str, ...], *, direction: Direction | None = None,
           needs_oracle: bool = False) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register a metric in `METRICS`, in `REPORTED` with its metadata (`MetricInfo`) and in the
    default metric list of each benchmark family.

    The one place a metric's name is written, so the registries and the defaults cannot drift apart.
    """

    def add(fn: MetricFn) -> MetricFn:
        METRICS.register(name)(fn)
        REPORTED.register(name)(MetricInfo("evaluation", direction, needs_oracle))
        for family in families:
            DEFAULTS[family].append(name)
        return fn

    return add
