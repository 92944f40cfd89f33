"""Membership-inference scores, AUC and PrivLeak against hand-computed values and sklearn."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainables.metrics import mia


def test_min_k_keeps_the_lowest_int_n_k_tokens():
    assert mia.min_k_score(np.array([-1.0, -5.0, -2.0, -4.0, -3.0])) == pytest.approx(4.5)  # int(5 * 0.4) = 2
    assert mia.min_k_score(np.array([-1.0, -3.0])) == pytest.approx(3.0)  # int(0.8) = 0 -> at least 1


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


def test_privleak_sign():
    assert mia.privleak(1.0, 0.5) == pytest.approx(-100.0)  # forget set fully exposed: under-unlearning
    assert mia.privleak(0.2, 0.5) == pytest.approx(60.0)  # less member-like than the reference: over-unlearning
    assert mia.privleak(0.5, 0.5) == 0.0
    with pytest.raises(ValueError):
        mia.privleak(0.5, 1.0)
