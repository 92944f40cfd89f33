"""MUSE's memorisation metrics (Shi et al., 2024, https://arxiv.org/abs/2407.06460) as registered `METRICS`.

VerbMem: ROUGE-L F1 of greedy continuations of forget-text prompts against the true continuations. KnowMem: ROUGE-L
F1 of greedy answers to forget / retain QA (the ICL examples are already part of the loader's prompts). MUSE's
PrivLeak is the shared `privleak` metric (`mia_suite`). Each is MISSING when its eval set is absent.

Generation follows open-unlearning's MUSE configs: greedy, up to 128 new tokens for VerbMem and 32 for KnowMem
(`eval.max_new_tokens` overrides both), KnowMem answers cut at its stop strings (kept under any length).
"""

from __future__ import annotations

import numpy as np

from trainables.metrics import tofu
from trainables.metrics.registry import EvalContext, MetricResult, metric, missing

VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
KNOWMEM_STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")  # the next ICL-style question starts there


def _rouge_f1(ctx: EvalContext, split: str, max_new_tokens: int, stop_strings: tuple[str, ...] = ()) -> MetricResult:
    if not ctx.examples(split):
        return missing(f"no {split} set in {ctx.source()}")
    scores = tofu.rouge_l_f1(ctx.generations(split, max_new_tokens, stop_strings), ctx.rouge_references(split))
    return MetricResult(float(np.mean(scores)), scores)


@metric("verbmem_rougeL_f1", ("muse",), direction="min")
def verbmem_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """VerbMem on `verbmem_forget` (lower = less verbatim memorisation)."""
    return _rouge_f1(ctx, "verbmem_forget", VERBMEM_MAX_NEW_TOKENS)


@metric("knowmem_forget_rougeL_f1", ("muse",), direction="min")
def knowmem_forget_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """KnowMem on `knowmem_forget` (lower = less forget knowledge)."""
    return _rouge_f1(ctx, "knowmem_forget", KNOWMEM_MAX_NEW_TOKENS, KNOWMEM_STOP_STRINGS)


@metric("knowmem_retain_rougeL_f1", ("muse",), direction="max")
def knowmem_retain_rouge_l_f1(ctx: EvalContext) -> MetricResult:
    """KnowMem on `knowmem_retain` (higher = utility preserved)."""
    return _rouge_f1(ctx, "knowmem_retain", KNOWMEM_MAX_NEW_TOKENS, KNOWMEM_STOP_STRINGS)
