"""MUSE's memorisation metrics (Shi et al., 2024, https://arxiv.org/abs/2407.06460) as registered `METRICS`.

VerbMem: ROUGE-L F1 of greedy continuations of forget-text prompts against the true continuations. KnowMem: ROUGE-L
F1 of greedy answers to forget / retain QA (the ICL examples are already part of the loader's prompts). MUSE's
PrivLeak is the shared `privleak` metric (`mia_suite`). Each is MISSING when its eval set is absent.
"""

from __future__ import annotations

import numpy as np

from trainables.metrics import tofu
from trainables.metrics.registry import MISSING, EvalContext, MetricResult, metric


def _rouge_f1(ctx: EvalContext, split: str) -> MetricResult:
    examples = ctx.examples(split)
    if not examples:
        return MISSING
    scores = tofu.rouge_l_f1(ctx.generations(split), [ex.answer for ex in examples])
    return MetricResult(float(np.mean(scores)), scores)


@metric("verbmem_rougeL_f1", ("muse",))
def verbmem_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """VerbMem on `verbmem_forget` (lower = less verbatim memorisation)."""
    return _rouge_f1(ctx, "verbmem_forget")


@metric("knowmem_forget_rougeL_f1", ("muse",))
def knowmem_forget_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """KnowMem on `knowmem_forget` (lower = less forget knowledge)."""
    return _rouge_f1(ctx, "knowmem_forget")


@metric("knowmem_retain_rougeL_f1", ("muse",))
def knowmem_retain_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """KnowMem on `knowmem_retain` (higher = utility preserved)."""
    return _rouge_f1(ctx, "knowmem_retain")
