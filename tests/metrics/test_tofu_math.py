"""TOFU metric math against hand-computed values and direct scipy / rouge_score calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rouge_score import rouge_scorer
from scipy import stats

from trainables.metrics import tofu


def test_probability_is_exp_of_minus_avg_nll():
    np.testing.assert_allclose(tofu.probability(np.array([0.0, 1.0, 2.5])), [1.0, math.exp(-1), math.exp(-2.5)])


def test_truth_ratio_is_w_over_c():
    correct = np.array([1.0, 2.0])
    perturbed = np.array([[2.0, 4.0], [1.0, 1.0]])
    w = np.exp(-perturbed.mean(axis=1))
    c = np.exp(-correct)
    np.testing.assert_allclose(tofu.truth_ratio(correct, perturbed), w / c)
    np.testing.assert_allclose(tofu.truth_ratio(correct, perturbed), [math.exp(-2.0), math.exp(1.0)])


def test_truth_ratio_ignores_nan_padding_and_survives_underflow():
    tr = tofu.truth_ratio(np.array([1.0, 900.0]), np.array([[2.0, np.nan], [901.0, 899.0]]))
    np.testing.assert_allclose(tr, [math.exp(-1.0), 1.0])


def test_truth_ratio_aggregates():
    tr = np.array([0.5, 2.0, 1.0])
    assert tofu.truth_ratio_forget(tr) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert tofu.truth_ratio_true(np.array([0.5, 2.0, 0.0])) == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_normalised_probability():
    c, w = math.exp(-1.0), math.exp(-2.0) + math.exp(-3.0)
    got = tofu.normalised_probability(np.array([1.0, 1000.0]), np.array([[2.0, 3.0], [1001.0, np.nan]]))
    np.testing.assert_allclose(got, [c / (c + w), 1.0 / (1.0 + math.exp(-1.0))])


def test_rouge_matches_rouge_score():
    preds, refs = ["the cat", "a dog ran home"], ["the cat sat on the mat", "the dog ran home fast"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p)["rougeL"] for p, r in zip(preds, refs)]
    assert tofu.rouge_l_recall(preds, refs) == pytest.approx([s.recall for s in expected])
    assert tofu.rouge_l_f1(preds, refs) == pytest.approx([s.fmeasure for s in expected])
    assert tofu.rouge_l_recall(["the cat"], ["the cat sat on the mat"]) == pytest.approx([2 / 6])


@pytest.mark.parametrize(
    ("preds", "es", "em"),
    [
        ([1, 2, 3, 4], 1.0, 1.0),  # perfectly memorised
        ([9, 2, 3, 4], 0.75, 0.75),  # completes the answer after its first token
        ([1, 9, 3, 4], 0.5, 0.75),
        ([1, 2, 3, 9], 0.0, 0.75),  # last token wrong: only the empty suffix matches
        ([9, 9, 9, 9], 0.0, 0.0),
    ],
)
def test_extraction_strength_and_exact_memorization(preds, es, em):
    labels = np.array([1, 2, 3, 4])
    assert tofu.extraction_strength(np.array(preds), labels) == pytest.approx(es)
    assert tofu.exact_memorization(np.array(preds), labels) == pytest.approx(em)


def test_forget_quality_is_ks_pvalue():
    a, b = [0.1, 0.5, 0.9, 1.3], [0.2, 0.4, 2.0, 3.0, 4.0]
    assert tofu.forget_quality(a, a) == 1.0
    assert tofu.forget_quality(a, b) == pytest.approx(stats.ks_2samp(a, b).pvalue)


def test_model_utility_is_hmean_skipping_missing():
    values = {"a": 0.5, "b": 0.25, "c": None, "d": float("nan")}
    assert tofu.model_utility(values) == pytest.approx(stats.hmean([0.5, 0.25]))
    assert tofu.model_utility({"a": 0.5, "b": 0.0}) == 0.0


def test_model_utility_errors():
    with pytest.raises(ValueError, match="at least one"):
        tofu.model_utility({"a": None})
    with pytest.raises(ValueError, match="negative"):
        tofu.model_utility({"a": 0.5, "b": -0.1})
