"""Membership-inference AUCs (forget = members, holdout = non-members) and PrivLeak, as registered `METRICS`.

MISSING when the benchmark has no holdout set. Every attack reuses the answer scores of forget and holdout
(`EvalContext.answer_scores`), so the four attacks cost one forward pass per set.
"""

from __future__ import annotations

from collections.abc import Callable

from trainables.metrics import mia
from trainables.metrics.registry import MISSING, EvalContext, MetricResult, metric
from trainables.metrics.scoring import ItemScores

Attack = Callable[[ItemScores, list[str]], list[float]]


def _auc(ctx: EvalContext, attack: Attack) -> MetricResult:
    forget, holdout = ctx.examples("forget"), ctx.examples("holdout")
    if not forget or not holdout:
        return MISSING
    scores = {split: attack(ctx.answer_scores(split), [ex.answer for ex in ctx.examples(split)])
              for split in ("forget", "holdout")}
    return MetricResult(mia.mia_auc(scores["forget"], scores["holdout"]))


def _loss(s: ItemScores, texts: list[str]) -> list[float]:
    return [mia.loss_score(x) for x in s.avg_nll]


def _zlib(s: ItemScores, texts: list[str]) -> list[float]:
    return [mia.zlib_score(x, text) for x, text in zip(s.avg_nll, texts)]


def _min_k(s: ItemScores, texts: list[str]) -> list[float]:
    return [mia.min_k_score(lp) for lp in s.token_logprobs]


def _min_k_plus_plus(s: ItemScores, texts: list[str]) -> list[float]:
    return [mia.min_k_plus_plus_score(lp, mu, sd) for lp, mu, sd in zip(s.token_logprobs, s.vocab_mean, s.vocab_std)]


@metric("mia_loss", ("tofu",))
def mia_loss(ctx: EvalContext) -> MetricResult:
    """AUC of the LOSS attack (average answer NLL)."""
    return _auc(ctx, _loss)


@metric("mia_zlib", ("tofu",))
def mia_zlib(ctx: EvalContext) -> MetricResult:
    """AUC of the zlib attack (NLL over the zlib-compressed length of the answer text)."""
    return _auc(ctx, _zlib)


@metric("mia_min_k", ("tofu", "muse"))
def mia_min_k(ctx: EvalContext) -> MetricResult:
    """AUC of the min-k% attack, k = 0.4 (privleak and the oracle reference read this one)."""
    return _auc(ctx, _min_k)


@metric("mia_min_k_plus_plus", ("tofu",))
def mia_min_k_plus_plus(ctx: EvalContext) -> MetricResult:
    """AUC of the min-k%++ attack, k = 0.4."""
    return _auc(ctx, _min_k_plus_plus)


@metric("privleak", ("tofu", "muse"))
def privleak(ctx: EvalContext) -> MetricResult:
    """PrivLeak of `mia_min_k` against the oracle's min-k AUC (depends on `mia_min_k`; needs the oracle).

    Also MISSING when the oracle's AUC is exactly 1, where the relative difference is undefined.
    """
    auc = ctx.metric("mia_min_k").value
    ref = None if ctx.oracle is None else ctx.oracle.mia_min_k_auc
    if auc is None or ref is None or ref == 1.0:
        return MISSING
    return MetricResult(mia.privleak(auc, ref))
