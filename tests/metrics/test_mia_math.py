"""Membership-inference scores, AUC and PrivLeak against hand-computed values and sklearn."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainables.metrics import mia


@pytest.mark.parametrize("definitions", ["open-unlearning", "exact"])
def test_min_k_keeps_the_lowest_int_n_k_tokens(definitions):
    scores = np.array([-1.0, -5.0, -2.0, -4.0, -3.0])
    assert mia.min_k_score(scores, definitions=definitions) == pytest.approx(4.5)  # int(5 * 0.4) = 2
    assert mia.min_k_score(np.array([-1.0, -3.0]), definitions=definitions) == pytest.approx(3.0)  # >= 1 kept


def test_min_k_of_no_tokens():
    """open-unlearning scores an answer with no tokens left (EOS only, last token dropped) 0; exact never has one."""
    empty = np.array([])
    assert mia.min_k_score(empty) == 0.0
    assert mia.min_k_plus_plus_score(empty, empty, empty) == 0.0
    with pytest.raises(ValueError, match="at least one token"):
        mia.min_k_score(empty, definitions="exact")
    with pytest.raises(ValueError, match="at least one token"):
        mia.min_k_plus_plus_score(empty, empty, empty, definitions="exact")


def test_min_k_plus_plus_standardises_by_the_vocab_distribution():
    logp = np.array([-1.0, -2.0, -3.0])
    mu, sigma = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 2.0, 0.5])
    assert mia.min_k_plus_plus_score(logp, mu, sigma) == pytest.approx(4.0)  # z = [0, -0.5, -4], int(3 * 0.4) = 1

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10))
    vocab = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    tokens = rng.integers(0, 10, size=6)
    token_logp = vocab[np.arange(6), tokens]
    mu = (np.exp(vocab) * vocab).sum(axis=1)
    sigma = np.sqrt((np.exp(vocab) * vocab**2).sum(axis=1) - mu**2)
    z = np.sort((token_logp - mu) / sigma)
    assert mia.min_k_plus_plus_score(token_logp, mu, sigma) == pytest.approx(-z[:2].mean())


def test_loss_and_zlib_scores():
    text = "the cat sat on the mat"
    assert mia.loss_score(2.5) == 2.5
    assert mia.zlib_score(2.5, text) == pytest.approx(2.5 / len(zlib.compress(text.encode("utf-8"))))


def test_mia_auc_labels_forget_0_holdout_1():
    forget, holdout = [0.1, 0.4, 0.35], [0.8, 0.3, 0.9]
    assert mia.mia_auc(forget, holdout) == pytest.approx(roc_auc_score([0, 0, 0, 1, 1, 1], forget + holdout))
    assert mia.mia_auc([0.1, 0.2], [0.8, 0.9]) == 1.0  # memorised forget set: lower scores than non-members


def test_mia_auc_empty_holdout_is_a_clear_error():
    with pytest.raises(ValueError, match="holdout set is empty: MIA needs non-members"):
        mia.mia_auc([0.1, 0.2], [])


@pytest.mark.parametrize("definitions", ["open-unlearning", "exact"])
def test_privleak_sign(definitions):
    assert mia.privleak(1.0, 0.5, definitions=definitions) == pytest.approx(-100.0)  # exposed: under-unlearning
    assert mia.privleak(0.2, 0.5, definitions=definitions) == pytest.approx(60.0)  # less member-like: over-unlearning
    assert mia.privleak(0.5, 0.5, definitions=definitions) == 0.0


def test_privleak_at_reference_auc_1():
    """open-unlearning divides by `(1 - 1) + 1e-10`: (1 - 0.5) / 1e-10 * 100 = 5e11; exact: undefined."""
    assert mia.privleak(0.5, 1.0) == pytest.approx(5e11)
    assert mia.privleak(1.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="auc_ref == 1 under eval.definitions=exact"):
        mia.privleak(0.5, 1.0, definitions="exact")
