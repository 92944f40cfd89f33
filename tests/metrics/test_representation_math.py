"""Entanglement measures and the membership probe against direct numpy computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg

from trainables.metrics.representation import entanglement, probe_recoverability


def unit_cloud(rng: np.random.Generator, center: np.ndarray, n: int, spread: float) -> np.ndarray:
    z = center + spread * rng.normal(size=(n, len(center)))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.fixture
def clouds():
    rng = np.random.default_rng(0)
    d = 8
    far_a, far_b = np.eye(d)[0], np.eye(d)[1]
    return {
        "sep_f": unit_cloud(rng, far_a, 40, 0.1),
        "sep_r": unit_cloud(rng, far_b, 30, 0.1),
        "same_f": unit_cloud(rng, far_a, 40, 0.5),
        "same_r": unit_cloud(rng, far_a, 30, 0.5),
    }


def direct_mmd(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.vstack([x, y])
    dist = np.sqrt(((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1))
    median = np.median(dist[np.triu_indices(len(pooled), k=1)])
    k = sum(np.exp(-dist**2 / (2 * (s * median) ** 2)) for s in (0.25, 0.5, 1, 2, 4))
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def sqrtm_w2(x: np.ndarray, y: np.ndarray) -> float:
    """The definition as written, with `scipy.linalg.sqrtm` (real part)."""
    sx, sy = np.cov(x.T), np.cov(y.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular covariances when N < D
        root = np.real(linalg.sqrtm(sx))
        cross = np.real(linalg.sqrtm(root @ sy @ root))
    return ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(sx + sy - 2 * cross)


def direct_variance(x: np.ndarray, y: np.ndarray) -> float:
    return (np.trace(np.cov(x.T)) + np.trace(np.cov(y.T))) / ((x.mean(0) - y.mean(0)) ** 2).sum()


@pytest.mark.parametrize("pair", [("sep_f", "sep_r"), ("same_f", "same_r")])
def test_entanglement_matches_direct_computation(clouds, pair):
    x, y = clouds[pair[0]], clouds[pair[1]]
    got = entanglement(x, y)
    assert set(got) == {"variance", "mk_mmd", "w2"}
    assert got["variance"] == pytest.approx(direct_variance(x, y))
    assert got["mk_mmd"] == pytest.approx(direct_mmd(x, y), rel=1e-9, abs=1e-12)
    assert got["w2"] == pytest.approx(sqrtm_w2(x, y), rel=1e-6, abs=1e-9)


def test_w2_matches_sqrtm_with_singular_covariances():
    rng = np.random.default_rng(1)
    x, y = unit_cloud(rng, np.eye(48)[0], 12, 0.5), unit_cloud(rng, np.eye(48)[1], 9, 0.5)  # N < D
    assert entanglement(x, y)["w2"] == pytest.approx(sqrtm_w2(x, y), rel=1e-6)


def test_separated_clouds_are_less_entangled_than_overlapping_ones(clouds):
    sep = entanglement(clouds["sep_f"], clouds["sep_r"])
    same = entanglement(clouds["same_f"], clouds["same_r"])
    assert sep["variance"] < 0.1 < 10 < same["variance"]
    assert sep["mk_mmd"] > 10 * same["mk_mmd"]
    assert sep["w2"] > 10 * same["w2"]


def test_identical_sets_have_infinite_variance_and_zero_distances(clouds):
    x = clouds["same_f"]
    got = entanglement(x, x.copy())
    assert got["variance"] == float("inf")
    assert got["mk_mmd"] == pytest.approx(0.0, abs=1e-10)
    assert got["w2"] == pytest.approx(0.0, abs=1e-8)


def test_entanglement_rejects_too_few_items(clouds):
    with pytest.raises(ValueError, match="at least 2"):
        entanglement(clouds["sep_f"][:1], clouds["sep_r"])


def test_probe_separable_vs_identical(clouds):
    assert probe_recoverability(clouds["sep_f"], clouds["sep_r"]) == 1.0
    assert probe_recoverability(clouds["same_f"], clouds["same_r"]) < 0.8


def test_probe_needs_two_items_per_class(clouds):
    with pytest.raises(ValueError, match="at least 2"):
        probe_recoverability(clouds["sep_f"], clouds["sep_r"][:1])
