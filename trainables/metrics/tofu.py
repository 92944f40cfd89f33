"""TOFU-style metric math over numbers: probabilities, truth ratios, ROUGE, memorisation, forget quality, utility.

Definitions follow locuslab/open-unlearning's `src/evals` (see `shared/reference/unlearning-math.md`,
"Evaluation"). Functions whose numbers depend on `eval.definitions` take a keyword `definitions`:
"open-unlearning" (default) reproduces its formulas, epsilons and edge cases, so values are comparable with
published TOFU numbers; "exact" uses log-space forms that stay exact where probabilities underflow. Each docstring
says where the two differ. Everything here takes per-item numbers (average answer-token NLLs, token ids, strings) and
returns numbers; the forward passes live in `scoring.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rouge_score import rouge_scorer
from scipy import special, stats

from trainables.metrics.definitions import EXACT, OPEN_UNLEARNING, OU_EPSILON, check


def probability(avg_nll: np.ndarray) -> np.ndarray:
    """Per-item answer probability `p_i = exp(-avgNLL_i)` (geometric mean of the token probabilities).

    Same under both definitions.

    Args:
        avg_nll: `[N]` average answer-token NLL (EOS included).

    Returns:
        `[N]` in [0, 1].
    """
    return np.exp(-np.asarray(avg_nll, dtype=np.float64))


def truth_ratio(avg_nll_correct: np.ndarray, avg_nll_perturbed: np.ndarray, *,
                definitions: str = OPEN_UNLEARNING) -> np.ndarray:
    """Per-item truth ratio `tr_i = w_i / c_i`.

    `c = exp(-avgNLL(correct))` (forget / retain: the paraphrased answer, or `answer` where there is none;
    real authors / world facts: `answer`) and `w = exp(-mean_j avgNLL(perturbed_j))`.

    - open-unlearning: `w / (c + 1e-10)` in probability space. Once the correct answer's avgNLL passes ~23
      (`c < 1e-10`, a collapsed model) the epsilon dominates: the ratio tends to `w * 1e10` instead of `w / c`.
    - exact: `exp(avgNLL_c - mean_j avgNLL_j)`, which stays exact when both probabilities underflow.

    Args:
        avg_nll_correct: `[N]`.
        avg_nll_perturbed: `[N, K]`; rows of items with fewer than K perturbed answers are NaN-padded.
        definitions: "open-unlearning" or "exact".

    Returns:
        `[N]` truth ratios in [0, inf): < 1 means the model prefers the correct answer.
    """
    correct = np.asarray(avg_nll_correct, dtype=np.float64)
    wrong = np.nanmean(np.asarray(avg_nll_perturbed, dtype=np.float64), axis=1)
    if check(definitions) == EXACT:
        return np.exp(correct - wrong)
    return np.exp(-wrong) / (np.exp(-correct) + OU_EPSILON)


def truth_ratio_forget(tr: np.ndarray, *, definitions: str = OPEN_UNLEARNING) -> float:
    """Forget-set aggregate "closer to 1 is better": `mean_i min(tr_i, 1/tr_i)`, in [0, 1].

    1 means the model cannot tell the true answer from the wrong ones (what a model that never saw the data does).
    open-unlearning takes `1 / (tr + 1e-10)`, exact `1 / tr`; the epsilon only guards the division at `tr = 0`
    (which scores 0 either way), so the two differ by a relative 1e-10 at most. The difference that matters on
    collapsed models is in the per-item ratios (`truth_ratio`).
    """
    tr = np.asarray(tr, dtype=np.float64)
    if check(definitions) == OPEN_UNLEARNING:
        return float(np.mean(np.minimum(tr, 1.0 / (tr + OU_EPSILON))))
    with np.errstate(divide="ignore"):
        return float(np.mean(np.minimum(tr, 1.0 / tr)))


def truth_ratio_true(tr: np.ndarray) -> float:
    """Retain / real-authors / world-facts aggregate "true is better": `mean_i max(0, 1 - tr_i)`, in [0, 1].

    Same under both definitions (only the per-item ratios it averages differ).
    """
    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(tr, dtype=np.float64))))


def normalised_probability(avg_nll_correct: np.ndarray, avg_nll_perturbed: np.ndarray, *,
                           definitions: str = OPEN_UNLEARNING) -> np.ndarray:
    """Per-item probability of the correct answer among the options, `c / (c + sum_j w_j)`.

    Used for real-authors and world-facts, where the absolute probability of a short answer says little.
    `c = exp(-avgNLL(answer))` and `w_j = exp(-avgNLL(perturbed_j))`.

    - open-unlearning: `c / (c + sum_j w_j + 1e-10)`. When every option is unlikely (avgNLLs above ~23) the
      epsilon dominates and the value falls towards 0 whatever the model prefers.
    - exact: `sigmoid(-logsumexp_j(avgNLL_c - avgNLL_j))`, exact when every probability underflows.

    Args:
        avg_nll_correct: `[N]`.
        avg_nll_perturbed: `[N, K]`, NaN-padded like `truth_ratio`.
        definitions: "open-unlearning" or "exact".

    Returns:
        `[N]` in [0, 1).
    """
    correct = np.asarray(avg_nll_correct, dtype=np.float64)
    perturbed = np.asarray(avg_nll_perturbed, dtype=np.float64)
    if check(definitions) == OPEN_UNLEARNING:
        c = np.exp(-correct)
        return c / (c + np.nansum(np.exp(-perturbed), axis=1) + OU_EPSILON)
    diff = correct[:, None] - perturbed
    diff = np.where(np.isnan(diff), -np.inf, diff)
    return special.expit(-special.logsumexp(diff, axis=1))


def _rouge_l(preds: Sequence[str], refs: Sequence[str], field: str) -> list[float]:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    return [float(getattr(scorer.score(ref, pred)["rougeL"], field)) for pred, ref in zip(preds, refs)]


def rouge_l_recall(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Per-item ROUGE-L recall of each generation against its reference (TOFU's ROUGE).

    The formula is the same under both definitions; the reference differs (`scoring.rouge_references`).
    """
    return _rouge_l(preds, refs, "recall")


def rouge_l_f1(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Per-item ROUGE-L F1 of each generation against its reference (MUSE verbmem / knowmem); see `rouge_l_recall`."""
    return _rouge_l(preds, refs, "fmeasure")


def extraction_strength(pred_ids: np.ndarray, label_ids: np.ndarray, *, definitions: str = OPEN_UNLEARNING) -> float:
    """`ES = 1 - k*/n`: the share of the answer the model completes by itself once given a prefix of it.

    Teacher-forced: `pred_ids[t]` is the argmax prediction of `label_ids[t]` given the true prefix.

    - open-unlearning: `k*` is the first `k` in `0..n-1` with `pred_ids[k:] == label_ids[k:]`; when none matches
      (the last token is mispredicted) its loop ends with `k = n - 1`, so ES is `1/n` (a wrong one-token answer
      scores 1). No tokens at all (an answer that was only EOS, `scoring.ItemScores`) scores 0.
    - exact: `k*` is the smallest `k` in `0..n` with a matching suffix; the empty suffix (`k = n`) always matches,
      so a mispredicted last token scores 0. Needs n >= 1.

    Args:
        pred_ids: `[n]` argmax token ids.
        label_ids: `[n]` answer token ids.
        definitions: "open-unlearning" or "exact".

    Returns:
        ES in [0, 1]; 1 for a perfectly memorised answer.
    """
    preds, labels = np.asarray(pred_ids), np.asarray(label_ids)
    n = len(labels)
    if len(preds) != n:
        raise ValueError(f"extraction strength needs as many predictions as labels, got {len(preds)} and {n}")
    ou = check(definitions) == OPEN_UNLEARNING
    if n == 0:
        if ou:
            return 0.0
        raise ValueError("extraction strength needs n >= 1 labels under eval.definitions=exact")
    wrong = np.flatnonzero(preds != labels)
    k_star = int(wrong[-1]) + 1 if wrong.size else 0
    if ou:
        k_star = min(k_star, n - 1)
    return 1.0 - k_star / n


def exact_memorization(pred_ids: np.ndarray, label_ids: np.ndarray, *,
                       definitions: str = OPEN_UNLEARNING) -> float | None:
    """Fraction of answer tokens whose teacher-forced argmax prediction is the true token (`[n]` each).

    Same formula under both definitions. With no tokens (an answer that was only EOS) open-unlearning gives None
    (left out of the mean); exact never has that case (`scoring.ItemScores`) and raises.
    """
    preds, labels = np.asarray(pred_ids), np.asarray(label_ids)
    if len(preds) != len(labels):
        raise ValueError(f"exact memorization needs as many predictions as labels, got {len(preds)}, {len(labels)}")
    if len(labels) == 0:
        if check(definitions) == OPEN_UNLEARNING:
            return None
        raise ValueError("exact memorization needs n >= 1 labels under eval.definitions=exact")
    return float(np.mean(preds == labels))


def forget_quality(tr_unlearned: Sequence[float], tr_oracle: Sequence[float]) -> float:
    """TOFU forget quality: the two-sample KS-test p-value between forget-set truth ratios.

    High (near 1) when the unlearned model's truth-ratio distribution cannot be told from that of the retain-only
    ("oracle") model. Same test under both definitions: open-unlearning's `ks_test` runs `ks_2samp` on the
    per-item truth ratios themselves; the definitions differ only in those ratios (`truth_ratio`), which must come
    from the same definition for both models.

    Args:
        tr_unlearned: per-item forget truth ratios of the evaluated model.
        tr_oracle: the same of the retain-only model.

    Returns:
        `scipy.stats.ks_2samp(tr_unlearned, tr_oracle).pvalue`.
    """
    return float(stats.ks_2samp(np.asarray(tr_unlearned, dtype=np.float64),
                                np.asarray(tr_oracle, dtype=np.float64)).pvalue)


def model_utility(values: Mapping[str, float | None]) -> float:
    """TOFU model utility: the harmonic mean of the retain / real-authors / world-facts metrics given.

    Same under both definitions. The harmonic mean punishes any single collapsed metric: `scipy.stats.hmean`
    returns exactly 0 when a value is 0 (no error, no warning), so one zeroed component zeroes the utility.

    Args:
        values: metric name -> value in [0, 1]; None or NaN values (sets the benchmark lacks) are skipped.

    Returns:
        The harmonic mean of the remaining values.

    Raises:
        ValueError: when no value remains, or a value is negative (hmean is undefined there; scipy returns NaN).
    """
    kept = {k: float(v) for k, v in values.items() if v is not None and not np.isnan(v)}
    if not kept:
        raise ValueError(f"model utility needs at least one value, got {dict(values)}")
    negative = sorted(k for k, v in kept.items() if v < 0)
    if negative:
        raise ValueError(f"model utility is a harmonic mean of non-negative values; negative: {negative}")
    return float(stats.hmean(list(kept.values())))
