"""TOFU-style metric math over numbers: probabilities, truth ratios, ROUGE, memorisation, forget quality, utility.

Definitions follow locuslab/open-unlearning's `src/evals` (see `shared/reference/unlearning-math.md`,
"Evaluation"), so values are comparable with published TOFU numbers. Everything here takes per-item numbers
(average answer-token NLLs, token ids, strings) and returns numbers; the forward passes live in `scoring.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from rouge_score import rouge_scorer
from scipy import special, stats


def probability(avg_nll: np.ndarray) -> np.ndarray:
    """Per-item answer probability `p_i = exp(-avgNLL_i)` (geometric mean of the token probabilities).

    Args:
        avg_nll: `[N]` average answer-token NLL (EOS included).

    Returns:
        `[N]` in (0, 1].
    """
    return np.exp(-np.asarray(avg_nll, dtype=np.float64))


def truth_ratio(avg_nll_correct: np.ndarray, avg_nll_perturbed: np.ndarray) -> np.ndarray:
    """Per-item truth ratio `tr_i = w_i / c_i`.

    `c = exp(-avgNLL(correct))` (the paraphrased answer, or `answer` where there is none) and
    `w = exp(-mean_j avgNLL(perturbed_j))`. Computed as `exp(avgNLL_c - mean_j avgNLL_j)` so that two tiny
    probabilities do not underflow to 0/0 (open-unlearning adds 1e-10 to `c` instead; the values agree whenever
    `c >> 1e-10`).

    Args:
        avg_nll_correct: `[N]`.
        avg_nll_perturbed: `[N, K]`; rows of items with fewer than K perturbed answers are NaN-padded.

    Returns:
        `[N]` truth ratios in (0, inf): < 1 means the model prefers the correct answer.
    """
    correct = np.asarray(avg_nll_correct, dtype=np.float64)
    wrong = np.nanmean(np.asarray(avg_nll_perturbed, dtype=np.float64), axis=1)
    return np.exp(correct - wrong)


def truth_ratio_forget(tr: np.ndarray) -> float:
    """Forget-set aggregate "closer to 1 is better": `mean_i min(tr_i, 1/tr_i)`, in [0, 1].

    1 means the model cannot tell the true answer from the wrong ones (what a model that never saw the data does).
    """
    tr = np.asarray(tr, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.minimum(tr, 1.0 / tr)))


def truth_ratio_true(tr: np.ndarray) -> float:
    """Retain / real-authors / world-facts aggregate "true is better": `mean_i max(0, 1 - tr_i)`, in [0, 1]."""
    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(tr, dtype=np.float64))))


def normalised_probability(avg_nll_correct: np.ndarray, avg_nll_perturbed: np.ndarray) -> np.ndarray:
    """Per-item probability of the correct answer among the options, `c / (c + sum_j w_j)`.

    Used for real-authors and world-facts, where the absolute probability of a short answer says little. Here
    `c = exp(-avgNLL(answer))` and `w_j = exp(-avgNLL(perturbed_j))`, evaluated as
    `sigmoid(-logsumexp_j(avgNLL_c - avgNLL_j))` so it stays exact when every probability underflows.

    Args:
        avg_nll_correct: `[N]`.
        avg_nll_perturbed: `[N, K]`, NaN-padded like `truth_ratio`.

    Returns:
        `[N]` in (0, 1).
    """
    correct = np.asarray(avg_nll_correct, dtype=np.float64)[:, None]
    diff = correct - np.asarray(avg_nll_perturbed, dtype=np.float64)
    diff = np.where(np.isnan(diff), -np.inf, diff)
    return special.expit(-special.logsumexp(diff, axis=1))


def _rouge_l(preds: Sequence[str], refs: Sequence[str], field: str) -> list[float]:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    return [float(getattr(scorer.score(ref, pred)["rougeL"], field)) for pred, ref in zip(preds, refs)]


def rouge_l_recall(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Per-item ROUGE-L recall of each generation against its reference (TOFU's ROUGE)."""
    return _rouge_l(preds, refs, "recall")


def rouge_l_f1(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Per-item ROUGE-L F1 of each generation against its reference (MUSE verbmem / knowmem)."""
    return _rouge_l(preds, refs, "fmeasure")


def extraction_strength(pred_ids: np.ndarray, label_ids: np.ndarray) -> float:
    """`ES = 1 - k*/n`: the share of the answer the model completes by itself once given a prefix of it.

    Teacher-forced: `pred_ids[t]` is the argmax prediction of `label_ids[t]` given the true prefix. `k*` is the
    smallest `k` in `0..n` with `pred_ids[k:] == label_ids[k:]`; the empty suffix (`k = n`) always matches, so an
    answer whose last token is mispredicted scores 0 (open-unlearning's loop stops at `k = n - 1` and gives `1/n`
    there instead; every other case agrees).

    Args:
        pred_ids: `[n]` argmax token ids.
        label_ids: `[n]` answer token ids, n >= 1.

    Returns:
        ES in [0, 1]; 1 for a perfectly memorised answer.
    """
    preds, labels = np.asarray(pred_ids), np.asarray(label_ids)
    n = len(labels)
    if n == 0 or len(preds) != n:
        raise ValueError(f"extraction strength needs n >= 1 predictions and labels, got {len(preds)} and {n}")
    wrong = np.flatnonzero(preds != labels)
    k_star = int(wrong[-1]) + 1 if wrong.size else 0
    return 1.0 - k_star / n


def exact_memorization(pred_ids: np.ndarray, label_ids: np.ndarray) -> float:
    """Fraction of answer tokens whose teacher-forced argmax prediction is the true token (`[n]` each, n >= 1)."""
    preds, labels = np.asarray(pred_ids), np.asarray(label_ids)
    if len(labels) == 0 or len(preds) != len(labels):
        raise ValueError(f"exact memorization needs n >= 1 predictions and labels, got {len(preds)}, {len(labels)}")
    return float(np.mean(preds == labels))


def forget_quality(tr_unlearned: Sequence[float], tr_oracle: Sequence[float]) -> float:
    """TOFU forget quality: the two-sample KS-test p-value between forget-set truth ratios.

    High (near 1) when the unlearned model's truth-ratio distribution cannot be told from that of the retain-only
    ("oracle") model. KS is invariant under monotone maps, so this equals open-unlearning's test on `1/tr`.

    Args:
        tr_unlearned: per-item forget truth ratios of the evaluated model.
        tr_oracle: the same of the retain-only model.

    Returns:
        `scipy.stats.ks_2samp(tr_unlearned, tr_oracle).pvalue`.
    """
    return float(stats.ks_2samp(np.asarray(tr_unlearned, dtype=np.float64),
                                np.asarray(tr_oracle, dtype=np.float64)).pvalue)


def model_utility(values: Mapping[str, float]) -> float:
    """TOFU model utility: the harmonic mean of the retain / real-authors / world-facts metrics given.

    The harmonic mean punishes any single collapsed metric: `scipy.stats.hmean` returns exactly 0 when a value is
    0 (no error, no warning), so one zeroed component zeroes the utility.

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
