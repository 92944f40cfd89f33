"""Membership-inference attack scores, their AUC, and MUSE's PrivLeak.

Convention (open-unlearning's `src/evals/metrics/mia`): every score is "higher = looks like a non-member", and the
AUC labels forget items 0 and holdout items 1. A model that still remembers the forget set scores it lower than the
holdout set, so AUC > 0.5; a model that never saw either gives ~0.5; an over-unlearned model gives < 0.5.

Functions whose numbers depend on `eval.definitions` take a keyword `definitions` ("open-unlearning", the default,
or "exact"); each docstring says where the two differ.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from trainables.metrics.definitions import OPEN_UNLEARNING, OU_EPSILON, check

MIN_K = 0.4
VARIANCE_FLOOR = 1e-6


def loss_score(avg_nll: float) -> float:
    """LOSS attack (Yeom et al., 2018): the average answer-token NLL. Same under both definitions."""
    return float(avg_nll)


def zlib_score(avg_nll: float, text: str) -> float:
    """zlib attack (Carlini et al., 2021): `avgNLL / len(zlib.compress(text))` (bytes of the UTF-8 text).

    Dividing by the compressed length discounts text that is likely for any model because it is repetitive. The
    formula is the same under both definitions; the text differs: open-unlearning compresses the answer as the
    tokenizer decodes its label tokens (a truncated answer is the truncated text), exact the answer text
    (`scoring.answer_texts`).
    """
    return float(avg_nll) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(token_logprobs: np.ndarray, k: float = MIN_K, *, definitions: str = OPEN_UNLEARNING) -> float:
    """Min-k% attack (Shi et al., 2024, https://arxiv.org/abs/2310.16789): `-mean` of the lowest k of the scores.

    The number of tokens kept is `max(1, int(n * k))` (floor, at least one), as open-unlearning does. Which tokens
    are scored depends on the definitions (`scoring.ItemScores`); open-unlearning can leave none (an answer that
    was only EOS), which it scores 0; under exact there is always one and an empty input raises.

    Args:
        token_logprobs: `[n]` log-probabilities (or standardised scores) of the answer tokens.
        k: share of tokens kept, in (0, 1].
        definitions: "open-unlearning" or "exact".

    Returns:
        The score; higher means the rarest tokens were less likely, i.e. a non-member.
    """
    scores = np.sort(np.asarray(token_logprobs, dtype=np.float64))
    if scores.size == 0:
        if check(definitions) == OPEN_UNLEARNING:
            return 0.0
        raise ValueError("min-k needs at least one token under eval.definitions=exact")
    return float(-np.mean(scores[: max(1, int(scores.size * k))]))


def min_k_plus_plus_score(token_logprobs: np.ndarray, vocab_mean: np.ndarray, vocab_std: np.ndarray,
                          k: float = MIN_K, *, definitions: str = OPEN_UNLEARNING) -> float:
    """Min-k%++ attack (Zhang et al., 2024, https://arxiv.org/abs/2404.02936): min-k on standardised tokens.

    Each token's log-probability is standardised by the model's own distribution at that position,
    `(log p(x_t) - mu_t) / sigma_t` with `mu_t = sum_v p_v log p_v` and `sigma_t^2 = sum_v p_v (log p_v)^2 - mu_t^2`
    (both from `scoring.score_answers`, whose variance is floored at `VARIANCE_FLOOR` like open-unlearning's),
    so a token is judged by how likely it is compared with what the model expected there. No tokens: as
    `min_k_score` (open-unlearning 0, exact raises).

    Args:
        token_logprobs: `[n]` log p(x_t).
        vocab_mean: `[n]` mu_t.
        vocab_std: `[n]` sigma_t.
        k: share of tokens kept.
        definitions: "open-unlearning" or "exact".
    """
    z = (np.asarray(token_logprobs, dtype=np.float64) - np.asarray(vocab_mean, dtype=np.float64)) / np.asarray(
        vocab_std, dtype=np.float64
    )
    return min_k_score(z, k, definitions=definitions)


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of telling holdout (label 1) from forget (label 0) items by their scores (same under both definitions).

    Raises:
        ValueError: when either set is empty (an AUC needs both members and non-members).
    """
    if len(holdout_scores) == 0:
        raise ValueError("holdout set is empty: MIA needs non-members")
    if len(forget_scores) == 0:
        raise ValueError("forget set is empty: MIA needs members")
    labels = np.r_[np.zeros(len(forget_scores)), np.ones(len(holdout_scores))]
    return float(roc_auc_score(labels, np.r_[np.asarray(forget_scores, float), np.asarray(holdout_scores, float)]))


def privleak(auc: float, auc_ref: float, *, definitions: str = OPEN_UNLEARNING) -> float:
    """MUSE PrivLeak (Shi et al., 2024, https://arxiv.org/abs/2407.06460).

    - open-unlearning: `((1-AUC) - (1-AUC_ref)) / ((1-AUC_ref) + 1e-10) * 100`, finite at `AUC_ref = 1` (where it is
      `(1-AUC) * 1e12`, a number that only says the reference was perfectly separable).
    - exact: `((1-AUC) - (1-AUC_ref)) / (1-AUC_ref) * 100`, undefined at `AUC_ref = 1`.

    `1 - AUC` is MUSE's AUC convention (open-unlearning flips its AUC the same way before this formula);
    `AUC_ref` is the retain-only model's min-k AUC. 0 is ideal. Negative = under-unlearning: the forget set stands out
    from the holdout set as members more than it does for the reference (a model never unlearned scores about -100).
    Positive = over-unlearning: the forget set now looks *less* member-like than never-seen data, itself a leak.

    open-unlearning falls back to `AUC_ref = 0.5` when it has no reference; here the caller reports PrivLeak as
    missing instead, under both definitions.

    Raises:
        ValueError: under exact, when `auc_ref == 1` (MUSE's reference `1 - AUC_ref` is 0, the relative difference
            undefined).
    """
    if check(definitions) == OPEN_UNLEARNING:
        return ((1.0 - auc) - (1.0 - auc_ref)) / ((1.0 - auc_ref) + OU_EPSILON) * 100.0
    if auc_ref == 1.0:
        raise ValueError("privleak is undefined for auc_ref == 1 under eval.definitions=exact (it divides by "
                         "1 - auc_ref)")
    return ((1.0 - auc) - (1.0 - auc_ref)) / (1.0 - auc_ref) * 100.0
