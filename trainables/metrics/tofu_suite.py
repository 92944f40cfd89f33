"""TOFU's metrics (Maini et al., 2024, https://arxiv.org/abs/2401.06121) as registered `METRICS`.

Data sets: "forget"; the retain eval set (`EvalContext.retain_split`: `retain_perturbed` when present, else the
retain training set, whose truth ratio is then MISSING); "real_authors" (ra_*) and "world_facts" (wf_*), MISSING
when absent. Truth ratios are taken over the items that have perturbed answers (all of them in TOFU's files).
"""

from __future__ import annotations

import numpy as np

from trainables.metrics import tofu
from trainables.metrics.registry import MISSING, EvalContext, MetricResult, metric

UTILITY_COMPONENTS = ("retain_prob", "retain_rouge", "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio",
                      "wf_prob", "wf_rouge", "wf_truth_ratio")


def _prob(ctx: EvalContext, split: str) -> MetricResult:
    if not ctx.examples(split):
        return MISSING
    p = tofu.probability(ctx.answer_scores(split).avg_nll)
    return MetricResult(float(p.mean()), p.tolist())


def _rouge_recall(ctx: EvalContext, split: str) -> MetricResult:
    examples = ctx.examples(split)
    if not examples:
        return MISSING
    scores = tofu.rouge_l_recall(ctx.generations(split), [ex.answer for ex in examples])
    return MetricResult(float(np.mean(scores)), scores)


def _with_perturbed(ctx: EvalContext, split: str) -> list[int]:
    return [i for i, ex in enumerate(ctx.examples(split)) if ex.perturbed_answer]


def _truth_ratios(ctx: EvalContext, split: str) -> np.ndarray | None:
    """Per-item truth ratios of the items of `split` with perturbed answers; None when there are none."""
    keep = _with_perturbed(ctx, split)
    if not keep:
        return None
    correct = ctx.alternative_nll(split, "paraphrased")[keep]
    return tofu.truth_ratio(correct, ctx.alternative_nll(split, "perturbed")[keep])


def _truth_ratio_true(ctx: EvalContext, split: str) -> MetricResult:
    tr = _truth_ratios(ctx, split)
    return MISSING if tr is None else MetricResult(tofu.truth_ratio_true(tr), tr.tolist())


def _normalised_prob(ctx: EvalContext, split: str) -> MetricResult:
    """`c / (c + sum_j w_j)` with `c` from `answer` (not the paraphrase), over the items with perturbed answers."""
    keep = _with_perturbed(ctx, split)
    if not keep:
        return MISSING
    correct = ctx.answer_scores(split).avg_nll[keep]
    p = tofu.normalised_probability(correct, ctx.alternative_nll(split, "perturbed")[keep])
    return MetricResult(float(p.mean()), p.tolist())


@metric("forget_prob", ("tofu",))
def forget_prob(ctx: EvalContext) -> MetricResult:
    """Mean `exp(-avgNLL)` of the forget answers (lower = more forgotten)."""
    return _prob(ctx, "forget")


@metric("forget_rouge", ("tofu",))
def forget_rouge(ctx: EvalContext) -> MetricResult:
    """Mean ROUGE-L recall of greedy answers to the forget questions."""
    return _rouge_recall(ctx, "forget")


@metric("forget_truth_ratio", ("tofu",))
def forget_truth_ratio(ctx: EvalContext) -> MetricResult:
    """`mean min(tr, 1/tr)` on the forget set; per item: the truth ratios `tr` (forget quality reads these)."""
    tr = _truth_ratios(ctx, "forget")
    return MISSING if tr is None else MetricResult(tofu.truth_ratio_forget(tr), tr.tolist())


@metric("forget_quality", ("tofu",))
def forget_quality(ctx: EvalContext) -> MetricResult:
    """KS-test p-value of forget truth ratios vs the oracle's. Depends on `forget_truth_ratio`; needs the oracle."""
    own = ctx.metric("forget_truth_ratio").per_item
    if ctx.oracle is None or not ctx.oracle.forget_truth_ratios or not own:
        return MISSING
    return MetricResult(tofu.forget_quality(own, ctx.oracle.forget_truth_ratios))


@metric("retain_prob", ("tofu",))
def retain_prob(ctx: EvalContext) -> MetricResult:
    """Mean `exp(-avgNLL)` of the retain eval answers."""
    return _prob(ctx, ctx.retain_split())


@metric("retain_rouge", ("tofu",))
def retain_rouge(ctx: EvalContext) -> MetricResult:
    """Mean ROUGE-L recall on the retain eval set."""
    return _rouge_recall(ctx, ctx.retain_split())


@metric("retain_truth_ratio", ("tofu",))
def retain_truth_ratio(ctx: EvalContext) -> MetricResult:
    """`mean max(0, 1 - tr)` on `retain_perturbed`; MISSING without it."""
    return _truth_ratio_true(ctx, "retain_perturbed")


@metric("ra_prob", ("tofu",))
def ra_prob(ctx: EvalContext) -> MetricResult:
    """Real authors: normalised probability of the true answer among the options."""
    return _normalised_prob(ctx, "real_authors")


@metric("ra_rouge", ("tofu",))
def ra_rouge(ctx: EvalContext) -> MetricResult:
    """Real authors: mean ROUGE-L recall."""
    return _rouge_recall(ctx, "real_authors")


@metric("ra_truth_ratio", ("tofu",))
def ra_truth_ratio(ctx: EvalContext) -> MetricResult:
    """Real authors: `mean max(0, 1 - tr)` (correct = `answer`, these rows have no paraphrase)."""
    return _truth_ratio_true(ctx, "real_authors")


@metric("wf_prob", ("tofu",))
def wf_prob(ctx: EvalContext) -> MetricResult:
    """World facts: normalised probability of the true answer among the options."""
    return _normalised_prob(ctx, "world_facts")


@metric("wf_rouge", ("tofu",))
def wf_rouge(ctx: EvalContext) -> MetricResult:
    """World facts: mean ROUGE-L recall."""
    return _rouge_recall(ctx, "world_facts")


@metric("wf_truth_ratio", ("tofu",))
def wf_truth_ratio(ctx: EvalContext) -> MetricResult:
    """World facts: `mean max(0, 1 - tr)`."""
    return _truth_ratio_true(ctx, "world_facts")


@metric("model_utility", ("tofu",))
def model_utility(ctx: EvalContext) -> MetricResult:
    """Harmonic mean of the `UTILITY_COMPONENTS` that are not MISSING (depends on all of them)."""
    values = {name: ctx.metric(name).value for name in UTILITY_COMPONENTS}
    if all(v is None for v in values.values()):
        return MISSING
    return MetricResult(tofu.model_utility(values))


@metric("extraction_strength", ("tofu",))
def extraction_strength(ctx: EvalContext) -> MetricResult:
    """Mean extraction strength over the forget answers (teacher-forced argmax)."""
    if not ctx.examples("forget"):
        return MISSING
    scores = ctx.answer_scores("forget")
    es = [tofu.extraction_strength(p, y) for p, y in zip(scores.preds, scores.labels)]
    return MetricResult(float(np.mean(es)), es)


@metric("exact_memorization", ("tofu",))
def exact_memorization(ctx: EvalContext) -> MetricResult:
    """Mean share of forget answer tokens predicted exactly (teacher-forced argmax)."""
    if not ctx.examples("forget"):
        return MISSING
    scores = ctx.answer_scores("forget")
    em = [tofu.exact_memorization(p, y) for p, y in zip(scores.preds, scores.labels)]
    return MetricResult(float(np.mean(em)), em)
