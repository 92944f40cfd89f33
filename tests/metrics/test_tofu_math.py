"""TOFU metric math against hand-computed values and direct scipy / rouge_score calls, under both definitions.

"Collapsed" inputs have average NLLs near 30, past the ~23 where open-unlearning's 1e-10 epsilon outweighs
`exp(-avgNLL)`: `e^-30 = 9.3576e-14`, so `e^-30 / (e^-30 + 1e-10) = 9.3489e-4` where the exact ratio is 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rouge_score import rouge_scorer
from scipy import stats

from trainables.metrics import tofu

BOTH = ("open-unlearning", "exact")
E30 = math.exp(-30.0)
OU_COLLAPSED = E30 / (E30 + 1e-10)  # 9.3489e-4


def test_probability_is_exp_of_minus_avg_nll():
    np.testing.assert_allclose(tofu.probability(np.array([0.0, 1.0, 2.5])), [1.0, math.exp(-1), math.exp(-2.5)])


@pytest.mark.parametrize("definitions", BOTH)
def test_truth_ratio_is_w_over_c(definitions):
    correct = np.array([1.0, 2.0])
    perturbed = np.array([[2.0, 4.0], [1.0, 1.0]])
    w = np.exp(-perturbed.mean(axis=1))
    c = np.exp(-correct)
    got = tofu.truth_ratio(correct, perturbed, definitions=definitions)
    np.testing.assert_allclose(got, w / c)
    np.testing.assert_allclose(got, [math.exp(-2.0), math.exp(1.0)])


def test_truth_ratio_of_a_collapsed_answer_differs():
    correct, perturbed = np.array([30.0, 1.0]), np.array([[29.0, 31.0], [2.0, np.nan]])  # NaN padding ignored
    np.testing.assert_allclose(tofu.truth_ratio(correct, perturbed, definitions="exact"), [1.0, math.exp(-1.0)])
    np.testing.assert_allclose(tofu.truth_ratio(correct, perturbed), [OU_COLLAPSED, math.exp(-1.0)], rtol=1e-8)
    np.testing.assert_allclose(OU_COLLAPSED, 9.3489e-4, rtol=1e-4)
    exact = tofu.truth_ratio(np.array([900.0]), np.array([[901.0, 899.0]]), definitions="exact")
    np.testing.assert_allclose(exact, [1.0])  # both probabilities underflow to 0; log space stays exact
    assert tofu.truth_ratio(np.array([900.0]), np.array([[901.0, 899.0]]))[0] == 0.0  # 0 / (0 + 1e-10)


@pytest.mark.parametrize("definitions", BOTH)
def test_truth_ratio_aggregates(definitions):
    tr = np.array([0.5, 2.0, 1.0, 0.0])
    assert tofu.truth_ratio_forget(tr, definitions=definitions) == pytest.approx((0.5 + 0.5 + 1.0 + 0.0) / 4)
    assert tofu.truth_ratio_true(np.array([0.5, 2.0, 0.0])) == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_forget_aggregate_of_a_collapsed_model():
    """The same collapsed items: exact ratios 1 score a perfect 1, open-unlearning's ratios 9.35e-4 score ~0."""
    correct, perturbed = np.full(2, 30.0), np.full((2, 3), 30.0)
    exact = tofu.truth_ratio(correct, perturbed, definitions="exact")
    ou = tofu.truth_ratio(correct, perturbed)
    assert tofu.truth_ratio_forget(exact, definitions="exact") == pytest.approx(1.0)
    assert tofu.truth_ratio_forget(ou) == pytest.approx(OU_COLLAPSED)
    assert tofu.truth_ratio_true(exact) == 0.0
    assert tofu.truth_ratio_true(ou) == pytest.approx(1.0 - OU_COLLAPSED)  # 0.99907: looks like a healthy retain


@pytest.mark.parametrize("definitions", BOTH)
def test_normalised_probability(definitions):
    c, w = math.exp(-1.0), math.exp(-2.0) + math.exp(-3.0)
    got = tofu.normalised_probability(np.array([1.0]), np.array([[2.0, 3.0]]), definitions=definitions)
    np.testing.assert_allclose(got, [c / (c + w)])


def test_normalised_probability_when_every_option_is_unlikely():
    correct, perturbed = np.array([30.0, 1000.0]), np.array([[30.0, np.nan], [1001.0, np.nan]])
    exact = tofu.normalised_probability(correct, perturbed, definitions="exact")
    np.testing.assert_allclose(exact, [0.5, 1.0 / (1.0 + math.exp(-1.0))])
    ou = tofu.normalised_probability(correct, perturbed)
    np.testing.assert_allclose(ou, [E30 / (2 * E30 + 1e-10), 0.0], rtol=1e-8)  # 9.3401e-4: epsilon dominates


def test_rouge_matches_rouge_score():
    preds, refs = ["the cat", "a dog ran home"], ["the cat sat on the mat", "the dog ran home fast"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p)["rougeL"] for p, r in zip(preds, refs)]
    assert tofu.rouge_l_recall(preds, refs) == pytest.approx([s.recall for s in expected])
    assert tofu.rouge_l_f1(preds, refs) == pytest.approx([s.fmeasure for s in expected])
    assert tofu.rouge_l_recall(["the cat"], ["the cat sat on the mat"]) == pytest.approx([2 / 6])


@pytest.mark.parametrize(
    ("preds", "es_ou", "es_exact", "em"),
    [
        ([1, 2, 3, 4], 1.0, 1.0, 1.0),  # perfectly memorised
        ([9, 2, 3, 4], 0.75, 0.75, 0.75),  # completes the answer after its first token
        ([1, 9, 3, 4], 0.5, 0.5, 0.75),
        ([1, 2, 3, 9], 0.25, 0.0, 0.75),  # no suffix matches: OU's loop stops at k = n-1; exact: empty suffix
        ([9, 9, 9, 9], 0.25, 0.0, 0.0),
    ],
)
def test_extraction_strength_and_exact_memorization(preds, es_ou, es_exact, em):
    labels = np.array([1, 2, 3, 4])
    assert tofu.extraction_strength(np.array(preds), labels) == pytest.approx(es_ou)
    assert tofu.extraction_strength(np.array(preds), labels, definitions="exact") == pytest.approx(es_exact)
    for definitions in BOTH:
        assert tofu.exact_memorization(np.array(preds), labels, definitions=definitions) == pytest.approx(em)


def test_memorisation_of_one_wrong_token_and_of_no_tokens():
    one_wrong = (np.array([7]), np.array([5]))
    assert tofu.extraction_strength(*one_wrong) == 1.0  # open-unlearning: k stays 0, ES = 1 - 0/1
    assert tofu.extraction_strength(*one_wrong, definitions="exact") == 0.0
    empty = (np.array([], dtype=int), np.array([], dtype=int))  # an EOS-only answer once its last token is dropped
    assert tofu.extraction_strength(*empty) == 0.0
    assert tofu.exact_memorization(*empty) is None
    with pytest.raises(ValueError, match="n >= 1"):
        tofu.extraction_strength(*empty, definitions="exact")
    with pytest.raises(ValueError, match="n >= 1"):
        tofu.exact_memorization(*empty, definitions="exact")


def test_forget_quality_is_ks_pvalue():
    a, b = [0.1, 0.5, 0.9, 1.3], [0.2, 0.4, 2.0, 3.0, 4.0]
    assert tofu.forget_quality(a, a) == 1.0
    assert tofu.forget_quality(a, b) == pytest.approx(stats.ks_2samp(a, b).pvalue)


def test_forget_quality_of_a_collapsed_model_against_an_oracle():
    """Collapsed items (avgNLL 30..33, perturbed alike) against a healthy oracle's ratios."""
    oracle = [0.5, 0.8, 1.0, 1.2]
    correct = np.array([30.0, 31.0, 32.0, 33.0])
    perturbed = np.repeat(correct[:, None], 3, axis=1)
    exact = tofu.truth_ratio(correct, perturbed, definitions="exact")  # all 1: inside the oracle's range
    np.testing.assert_allclose(exact, 1.0)
    assert tofu.forget_quality(exact, oracle) == pytest.approx(stats.ks_2samp([1.0] * 4, oracle).pvalue)
    assert tofu.forget_quality(exact, oracle) == pytest.approx(54 / 70)  # D = 0.5 (ECDFs 0 vs 0.5 below 1.0)
    ou = tofu.truth_ratio(correct, perturbed)  # all below 1e-3: every one under the oracle's smallest, D = 1
    assert ou.max() < 1e-3
    assert tofu.forget_quality(ou, oracle) == pytest.approx(2 / 70)  # exact KS: 2 of C(8, 4) splits reach D = 1


def test_model_utility_is_hmean_skipping_missing():
    values = {"a": 0.5, "b": 0.25, "c": None, "d": float("nan")}
    assert tofu.model_utility(values) == pytest.approx(stats.hmean([0.5, 0.25]))
    assert tofu.model_utility({"a": 0.5, "b": 0.0}) == 0.0


def test_model_utility_errors():
    with pytest.raises(ValueError, match="at least one"):
        tofu.model_utility({"a": None})
    with pytest.raises(ValueError, match="negative"):
        tofu.model_utility({"a": 0.5, "b": -0.1})


def test_unknown_definitions_are_a_clear_error():
    with pytest.raises(ValueError, match="eval.definitions must be one of open-unlearning, exact; got 'ou'"):
        tofu.truth_ratio(np.array([1.0]), np.array([[1.0]]), definitions="ou")
