"""How separable forget and retain (or holdout) representations are: entanglement measures and a linear probe.

CLReg (Tang & Khanna, arXiv 2601.22028) argues that unlearning is easier, and less harmful to retained knowledge,
when forget and retain representations are disentangled at the target layer; these are the three entanglement
measures it reports, plus a probe asking whether the forgotten data is still recognisable (erased vs suppressed).
Inputs are numpy arrays `[N, D]` of L2-normalised sequence representations (`scoring.representations`).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

MMD_BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
PROBE_FOLDS = 5


def _check_pair(z_a: np.ndarray, z_b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{what} needs two [N, D] arrays with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"{what} needs at least 2 items per set, got {len(a)} and {len(b)}")
    return a, b


def variance_entanglement(z_f: np.ndarray, z_r: np.ndarray) -> float:
    """`E = (tr Cov(z_f) + tr Cov(z_r)) / ||mean(z_f) - mean(z_r)||^2`: within-set spread over between-set gap.

    Lower = less entangled. When the means coincide the ratio is infinite, and `inf` is returned (not an error:
    coinciding means are a legitimate, maximally entangled outcome), or NaN when both sets are also constant.
    """
    spread = np.var(z_f, axis=0, ddof=1).sum() + np.var(z_r, axis=0, ddof=1).sum()
    gap = float(np.sum((z_f.mean(axis=0) - z_r.mean(axis=0)) ** 2))
    if gap == 0.0:
        return float("inf") if spread > 0 else float("nan")
    return float(spread / gap)


def _squared_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances `[N, N]` via the Gram matrix (BLAS; no `[N, N, D]` temporary)."""
    norms = np.einsum("nd,nd->n", z, z)
    sq = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)
    np.fill_diagonal(sq, 0.0)
    return sq


def mk_mmd(z_f: np.ndarray, z_r: np.ndarray, scales: tuple[float, ...] = MMD_BANDWIDTH_SCALES) -> float:
    """Multi-kernel MMD^2, the biased V-statistic (diagonal kernel terms included, so it is >= 0).

    Kernel `k(x, y) = sum_s exp(-||x - y||^2 / (2 (s * m)^2))` with `m` the median pairwise distance of the pooled
    sample (the median heuristic) and `s` in `scales`. Pairs that coincide (squared distance <= 1e-12 of the largest,
    i.e. rounding) are left out of the median so that duplicated points cannot make it 0; if every pooled point
    coincides the MMD is 0.

    Returns:
        `mean K_ff + mean K_rr - 2 mean K_fr`.
    """
    sq = _squared_distances(np.vstack([z_f, z_r]))
    pairs = sq[np.triu_indices_from(sq, k=1)]
    distinct = pairs[pairs > 1e-12 * pairs.max()] if pairs.max() > 0 else pairs[:0]
    if distinct.size == 0:
        return 0.0
    median = float(np.median(np.sqrt(distinct)))
    kernel = sum(np.exp(-sq / (2.0 * (s * median) ** 2)) for s in scales)
    n = len(z_f)
    value = kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2.0 * kernel[:n, n:].mean()
    return float(max(value, 0.0))


def gaussian_w2(z_f: np.ndarray, z_r: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between Gaussian fits (Frechet distance, as in FID).

    `||mu_f - mu_r||^2 + tr(S_f + S_r - 2 (S_f^1/2 S_r S_f^1/2)^1/2)` with sample covariances (ddof=1). The
    cross term is evaluated without `scipy.linalg.sqrtm`, through an exact identity: with centred data `A` `[N_f, D]`
    and `B` `[N_r, D]`, `S_f^1/2 S_r S_f^1/2` has the same non-zero eigenvalues as `(A B^T)^T (A B^T) / c`,
    `c = (N_f - 1)(N_r - 1)`, so `tr((S_f^1/2 S_r S_f^1/2)^1/2)` is the sum of the singular values of `A B^T`
    over `sqrt(c)`. That costs `O(N_f N_r D)` instead of two `O(D^3)` matrix square roots (minutes per layer at
    D = 4096, and inaccurate for the singular covariances of N < D items); the tests check it against `sqrtm`.
    A tiny negative total (rounding) is clipped to 0.
    """
    a, b = z_f - z_f.mean(axis=0), z_r - z_r.mean(axis=0)
    scale = (len(z_f) - 1) * (len(z_r) - 1)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale)
    traces = np.sum(a**2) / (len(z_f) - 1) + np.sum(b**2) / (len(z_r) - 1)
    value = np.sum((z_f.mean(axis=0) - z_r.mean(axis=0)) ** 2) + traces - 2.0 * cross
    return float(max(value, 0.0))


def entanglement(z_forget: np.ndarray, z_retain: np.ndarray) -> dict:
    """The three entanglement measures between forget and retain representations at one layer.

    Args:
        z_forget: `[N_f, D]` L2-normalised forget representations, N_f >= 2.
        z_retain: `[N_r, D]` L2-normalised retain representations, N_r >= 2.

    Returns:
        `{"variance": E (lower = less entangled; inf when the means coincide), "mk_mmd": MMD^2 (biased),
        "w2": squared W2 of Gaussian fits}`; the last two are ~0 for identical distributions and grow with
        separation.

    Raises:
        ValueError: on mismatched shapes or fewer than 2 items in a set (a covariance needs 2).
    """
    z_f, z_r = _check_pair(z_forget, z_retain, "entanglement")
    return {"variance": variance_entanglement(z_f, z_r), "mk_mmd": mk_mmd(z_f, z_r), "w2": gaussian_w2(z_f, z_r)}


def probe_recoverability(z_forget: np.ndarray, z_holdout: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a linear probe telling forget (1) from holdout (0) representations.

    Both sets are unseen by the probe's test folds, so accuracy well above chance means membership is still
    linearly decodable from the representation: the forget data was suppressed in the output, not erased.
    Chance level is the majority-class share, not 0.5, when the sets differ in size. Stratified k-fold with
    `k = min(5, smallest class size)`, shuffled with `seed`.

    Args:
        z_forget: `[N_f, D]`.
        z_holdout: `[N_h, D]`.
        seed: fold shuffling seed (the probe itself is deterministic).

    Returns:
        Mean accuracy over the folds, in [0, 1].

    Raises:
        ValueError: when a class has fewer than 2 items (no stratified split exists) or shapes mismatch.
    """
    z_f, z_h = _check_pair(z_forget, z_holdout, "probe_recoverability")
    x = np.vstack([z_f, z_h])
    y = np.r_[np.ones(len(z_f), dtype=int), np.zeros(len(z_h), dtype=int)]
    folds = StratifiedKFold(n_splits=min(PROBE_FOLDS, len(z_f), len(z_h)), shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=folds, scoring="accuracy")
    return float(np.mean(scores))
