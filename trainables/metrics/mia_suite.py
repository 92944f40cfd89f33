"""Membership-inference AUCs (forget = members, holdout = non-members) and PrivLeak, as registered `METRICS`.

MISSING when the benchmark has no holdout set. Every attack reuses the answer scores of forget and holdout
(`EvalContext.answer_scores`), so the four attacks cost one forward pass per set. Which tokens min-k and min-k++
score and which text zlib compresses follow `eval.definitions` (`scoring.ItemScores`, `mia.zlib_score`).
"""

from __future__ import annotations

from collections.abc import Callable

from trainables.metrics import mia
from trainables.metrics.definitions import EXACT
from trainables.metrics.registry import NO_ORACLE, EvalContext, MetricResult, metric, missing

Attack = Callable[[EvalContext, str], list[float]]


def _auc(ctx: EvalContext, attack: Attack) -> MetricResult:
    if not ctx.examples("holdout"):
        return missing(f"no holdout split in {ctx.source()}: MIA needs non-members")
    if not ctx.examples("forget"):
        return missing(f"no forget split in {ctx.source()}: MIA needs members")
    return MetricResult(mia.mia_auc(attack(ctx, "forget"), attack(ctx, "holdout")))


def _loss(ctx: EvalContext, split: str) -> list[float]:
    return [mia.loss_score(x) for x in ctx.answer_scores(split).avg_nll]


def _zlib(ctx: EvalContext, split: str) -> list[float]:
    if ctx.cfg.definitions == EXACT:
        texts = [ex.answer for ex in ctx.examples(split)]
    else:
        texts = ctx.answer_texts(split)
    return [mia.zlib_score(x, text) for x, text in zip(ctx.answer_scores(split).avg_nll, texts)]


def _min_k(ctx: EvalContext, split: str) -> list[float]:
    return [mia.min_k_score(lp, definitions=ctx.cfg.definitions) for lp in ctx.answer_scores(split).token_logprobs]


def _min_k_plus_plus(ctx: EvalContext, split: str) -> list[float]:
    s = ctx.answer_scores(split)
    return [mia.min_k_plus_plus_score(lp, mu, sd, definitions=ctx.cfg.definitions)
            for lp, mu, sd in zip(s.token_logprobs, s.vocab_mean, s.vocab_std)]


@metric("mia_loss", ("tofu",))
def mia_loss(ctx: EvalContext) -> MetricResult:
    """AUC of the LOSS attack (average answer NLL)."""
    return _auc(ctx, _loss)


@metric("mia_zlib", ("tofu",))
def mia_zlib(ctx: EvalContext) -> MetricResult:
    """AUC of the zlib attack (NLL over the zlib-compressed length of the answer)."""
    return _auc(ctx, _zlib)


@metric("mia_min_k", ("tofu", "muse"))
def mia_min_k(ctx: EvalContext) -> MetricResult:
    """AUC of the min-k% attack, k = 0.4 (privleak and the oracle reference read this one)."""
    return _auc(ctx, _min_k)


@metric("mia_min_k_plus_plus", ("tofu",))
def mia_min_k_plus_plus(ctx: EvalContext) -> MetricResult:
    """AUC of the min-k%++ attack, k = 0.4."""
    return _auc(ctx, _min_k_plus_plus)


@metric("privleak", ("tofu", "muse"), needs_oracle=True)
def privleak(ctx: EvalContext) -> MetricResult:
    """PrivLeak of `mia_min_k` against the oracle's min-k AUC (depends on `mia_min_k`; needs the oracle).

    Without an oracle AUC it is MISSING under both definitions (open-unlearning would assume 0.5). Under exact it
    is also MISSING when the oracle's AUC is exactly 1, where the relative difference is undefined.
    """
    own = ctx.metric("mia_min_k")
    if own.value is None:
        return missing(f"mia_min_k is missing: {own.reason}")
    if ctx.oracle is None:
        return missing(NO_ORACLE)
    ref = ctx.oracle.mia_min_k_auc
    if ref is None:
        return missing("the oracle reference has no min-k AUC (its evaluation lacked mia_min_k)")
    if ctx.cfg.definitions == EXACT and ref == 1.0:
        return missing("oracle min-k AUC is 1: PrivLeak undefined under eval.definitions=exact")
    return MetricResult(mia.privleak(own.value, ref, definitions=ctx.cfg.definitions))
