"""TOFU's metrics (Maini et al., 2024, https://arxiv.org/abs/2401.06121) as registered `METRICS`.

Data sets: "forget"; the retain eval set (`EvalContext.retain_split`: `retain_perturbed` when present, else the
retain training set, whose truth ratio is then MISSING); "real_authors" (ra_*) and "world_facts" (wf_*), MISSING
when absent. Truth ratios are taken over the items that have perturbed answers (all of them in TOFU's files). The
correct answer of a truth ratio is the paraphrased answer on forget and retain, and `answer` on real authors and
world facts (open-unlearning's `answer_key: answer` there), under both definitions. Generations are greedy, up to
open-unlearning's 200 new tokens unless `eval.max_new_tokens` says otherwise.
"""

from __future__ import annotations

import numpy as np

from trainables.metrics import tofu
from trainables.metrics.registry import NO_ORACLE, EvalContext, MetricResult, metric, missing

UTILITY_COMPONENTS = ("retain_prob", "retain_rouge", "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio",
                      "wf_prob", "wf_rouge", "wf_truth_ratio")
TOFU_MAX_NEW_TOKENS = 200  # open-unlearning's configs/generation/default.yaml
# Sets whose truth ratio compares `answer` (not a paraphrase) with the perturbed answers.
ANSWER_IS_CORRECT = ("real_authors", "world_facts")


def _absent(ctx: EvalContext, split: str) -> MetricResult | None:
    """MISSING with a reason when `split` has no examples, else None."""
    return None if ctx.examples(split) else missing(f"no {split} set in {ctx.source()}")


def _prob(ctx: EvalContext, split: str) -> MetricResult:
    if (absent := _absent(ctx, split)) is not None:
        return absent
    p = tofu.probability(ctx.answer_scores(split).avg_nll)
    return MetricResult(float(p.mean()), p.tolist())


def _rouge_recall(ctx: EvalContext, split: str) -> MetricResult:
    if (absent := _absent(ctx, split)) is not None:
        return absent
    scores = tofu.rouge_l_recall(ctx.generations(split, TOFU_MAX_NEW_TOKENS), ctx.rouge_references(split))
    return MetricResult(float(np.mean(scores)), scores)


def _with_perturbed(ctx: EvalContext, split: str) -> list[int]:
    return [i for i, ex in enumerate(ctx.examples(split)) if ex.perturbed_answer]


def _truth_ratios(ctx: EvalContext, split: str) -> np.ndarray | MetricResult:
    """Per-item truth ratios of the items of `split` with perturbed answers, or MISSING (with a reason)."""
    if (absent := _absent(ctx, split)) is not None:
        return absent
    keep = _with_perturbed(ctx, split)
    if not keep:
        return missing(f"no item of the {split} set in {ctx.source()} has perturbed_answer")
    if split in ANSWER_IS_CORRECT:
        correct = ctx.answer_scores(split).avg_nll[keep]
    else:
        correct = ctx.alternative_nll(split, "paraphrased")[keep]
    return tofu.truth_ratio(correct, ctx.alternative_nll(split, "perturbed")[keep],
                            definitions=ctx.cfg.definitions)


def _truth_ratio_true(ctx: EvalContext, split: str) -> MetricResult:
    tr = _truth_ratios(ctx, split)
    return tr if isinstance(tr, MetricResult) else MetricResult(tofu.truth_ratio_true(tr), tr.tolist())


def _normalised_prob(ctx: EvalContext, split: str) -> MetricResult:
    """`c / (c + sum_j w_j)` with `c` from `answer` (not the paraphrase), over the items with perturbed answers."""
    if (absent := _absent(ctx, split)) is not None:
        return absent
    keep = _with_perturbed(ctx, split)
    if not keep:
        return missing(f"no item of the {split} set in {ctx.source()} has perturbed_answer")
    correct = ctx.answer_scores(split).avg_nll[keep]
    p = tofu.normalised_probability(correct, ctx.alternative_nll(split, "perturbed")[keep],
                                    definitions=ctx.cfg.definitions)
    return MetricResult(float(p.mean()), p.tolist())


@metric("forget_prob", ("tofu",), direction="min")
def forget_prob(ctx: EvalContext) -> MetricResult:
    """Mean `exp(-avgNLL)` of the forget answers (lower = more forgotten)."""
    return _prob(ctx, "forget")


@metric("forget_rouge", ("tofu",), direction="min")
def forget_rouge(ctx: EvalContext) -> MetricResult:
    """Mean ROUGE-L recall of greedy answers to the forget questions."""
    return _rouge_recall(ctx, "forget")


@metric("forget_truth_ratio", ("tofu",), direction="max")
def forget_truth_ratio(ctx: EvalContext) -> MetricResult:
    """`mean min(tr, 1/tr)` on the forget set; per item: the truth ratios `tr` (forget quality reads these)."""
    tr = _truth_ratios(ctx, "forget")
    if isinstance(tr, MetricResult):
        return tr
    return MetricResult(tofu.truth_ratio_forget(tr, definitions=ctx.cfg.definitions), tr.tolist())


@metric("forget_quality", ("tofu",), direction="max", needs_oracle=True)
def forget_quality(ctx: EvalContext) -> MetricResult:
    """KS-test p-value of forget truth ratios vs the oracle's. Depends on `forget_truth_ratio`; needs the oracle."""
    own = ctx.metric("forget_truth_ratio")
    if own.per_item is None:
        return missing(f"forget_truth_ratio is missing: {own.reason}")
    if ctx.oracle is None:
        return missing(NO_ORACLE)
    if not ctx.oracle.forget_truth_ratios:
        return missing("the oracle reference has no forget truth ratios (its evaluation lacked forget_truth_ratio)")
    return MetricResult(tofu.forget_quality(own.per_item, ctx.oracle.forget_truth_ratios))


@metric("retain_prob", ("tofu",), direction="max")
def retain_prob(ctx: EvalContext) -> MetricResult:
    """Mean `exp(-avgNLL)` of the retain eval answers."""
    return _prob(ctx, ctx.retain_split())


@metric("retain_rouge", ("tofu",), direction="max")
def retain_rouge(ctx: EvalContext) -> MetricResult:
    """Mean ROUGE-L recall on the retain eval set."""
    return _rouge_recall(ctx, ctx.retain_split())


@metric("retain_truth_ratio", ("tofu",), direction="max")
def retain_truth_ratio(ctx: EvalContext) -> MetricResult:
    """`mean max(0, 1 - tr)` on `retain_perturbed`; MISSING without it."""
    return _truth_ratio_true(ctx, "retain_perturbed")


@metric("ra_prob", ("tofu",), direction="max")
def ra_prob(ctx: EvalContext) -> MetricResult:
    """Real authors: normalised probability of the true answer among the options."""
    return _normalised_prob(ctx, "real_authors")


@metric("ra_rouge", ("tofu",), direction="max")
def ra_rouge(ctx: EvalContext) -> MetricResult:
    """Real authors: mean ROUGE-L recall."""
    return _rouge_recall(ctx, "real_authors")


@metric("ra_truth_ratio", ("tofu",), direction="max")
def ra_truth_ratio(ctx: EvalContext) -> MetricResult:
    """Real authors: `mean max(0, 1 - tr)`, correct = `answer` (also where a row has a paraphrase)."""
    return _truth_ratio_true(ctx, "real_authors")


@metric("wf_prob", ("tofu",), direction="max")
def wf_prob(ctx: EvalContext) -> MetricResult:
    """World facts: normalised probability of the true answer among the options."""
    return _normalised_prob(ctx, "world_facts")


@metric("wf_rouge", ("tofu",), direction="max")
def wf_rouge(ctx: EvalContext) -> MetricResult:
    """World facts: mean ROUGE-L recall."""
    return _rouge_recall(ctx, "world_facts")


@metric("wf_truth_ratio", ("tofu",), direction="max")
def wf_truth_ratio(ctx: EvalContext) -> MetricResult:
    """World facts: `mean max(0, 1 - tr)`, correct = `answer`."""
    return _truth_ratio_true(ctx, "world_facts")


@metric("model_utility", ("tofu",), direction="max")
def model_utility(ctx: EvalContext) -> MetricResult:
    """Harmonic mean of the `UTILITY_COMPONENTS` that are not MISSING (depends on all of them).

    Computed from fewer than all of them, the result's `reason` names the parts left out and why, so a utility
    over fewer parts is never read as TOFU's nine-part one.
    """
    parts = {name: ctx.metric(name) for name in UTILITY_COMPONENTS}
    absent = [f"{name} ({r.reason})" for name, r in parts.items() if r.value is None]
    if len(absent) == len(parts):
        return missing("every part is missing: " + "; ".join(absent))
    value = tofu.model_utility({name: r.value for name, r in parts.items()})
    if not absent:
        return MetricResult(value)
    return MetricResult(value, reason=f"computed from {len(parts) - len(absent)} of {len(parts)} parts; missing: "
                        + "; ".join(absent))


def _token_metric(ctx: EvalContext, fn) -> MetricResult:
    """Mean of a per-item teacher-forced forget statistic; items where it is None (no tokens) are left out."""
    if (absent := _absent(ctx, "forget")) is not None:
        return absent
    scores = ctx.answer_scores("forget")
    values = [fn(p, y, definitions=ctx.cfg.definitions) for p, y in zip(scores.preds, scores.labels)]
    kept = [v for v in values if v is not None]
    if not kept:
        return missing(f"no forget answer in {ctx.source()} has a token left once its last one is dropped")
    return MetricResult(float(np.mean(kept)), values)


@metric("extraction_strength", ("tofu",), direction="min")
def extraction_strength(ctx: EvalContext) -> MetricResult:
    """Mean extraction strength over the forget answers (teacher-forced argmax)."""
    return _token_metric(ctx, tofu.extraction_strength)


@metric("exact_memorization", ("tofu",), direction="min")
def exact_memorization(ctx: EvalContext) -> MetricResult:
    """Mean share of forget answer tokens predicted exactly (teacher-forced argmax); None items left out."""
    return _token_metric(ctx, tofu.exact_memorization)
