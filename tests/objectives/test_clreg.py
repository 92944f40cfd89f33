"""CLReg's loss forms, the symmetric variant, Proposition 3.2 and the dropout view."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.objectives import clreg_loss, clreg_term, dropout_view

ANCHOR = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
POSITIVE = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
NEGATIVES = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 1.0, 0.0], [0.0, -3.0, 2.0]])


def cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.double().numpy(), b.double().numpy()
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))


def dpo_by_hand(a, p, n, tau) -> float:
    s_pos = np.diag(cosines(a, p))[:, None]
    s_neg = cosines(a, n)
    margin = (s_pos - s_neg) / tau
    return float(np.mean(-2 * tau * np.log(1 / (1 + np.exp(-margin)))))


def infonce_by_hand(a, p, n, tau) -> float:
    e_pos = np.exp(np.diag(cosines(a, p)) / tau)
    e_neg = np.exp(cosines(a, n) / tau).sum(axis=1)
    return float(np.mean(-np.log(e_pos / (e_pos + e_neg))))


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_dpo_form_by_hand(tau):
    loss = clreg_loss(ANCHOR, POSITIVE, NEGATIVES, tau, form="dpo")
    assert loss.item() == pytest.approx(dpo_by_hand(ANCHOR, POSITIVE, NEGATIVES, tau), rel=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_infonce_form_by_hand(tau):
    loss = clreg_loss(ANCHOR, POSITIVE, NEGATIVES, tau, form="infonce")
    assert loss.item() == pytest.approx(infonce_by_hand(ANCHOR, POSITIVE, NEGATIVES, tau), rel=1e-5)


def test_default_form_is_dpo():
    assert (
        clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 0.5).item()
        == clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 0.5, form="dpo").item()
    )


@pytest.mark.parametrize("form", ["dpo", "infonce"])
def test_invariant_to_the_scale_of_the_representations(form):
    base = clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 0.3, form)
    scaled = clreg_loss(3.0 * ANCHOR, 0.01 * POSITIVE, 70.0 * NEGATIVES, 0.3, form)
    assert scaled.item() == pytest.approx(base.item(), rel=1e-5)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_equal_similarities(tau):
    v = torch.tensor([[0.3, -1.0, 2.0]])
    a, p, n = v.repeat(4, 1), 2 * v.repeat(4, 1), 5 * v.repeat(6, 1)
    assert clreg_loss(a, p, n, tau, "dpo").item() == pytest.approx(2 * tau * math.log(2), rel=1e-5)
    assert clreg_loss(a, p, n, tau, "infonce").item() == pytest.approx(math.log(1 + 6), rel=1e-5)


def test_small_tau_does_not_overflow():
    loss = clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 1e-3, "infonce")
    assert torch.isfinite(loss)
    assert torch.isfinite(clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 1e-3, "dpo"))


def test_bf16_inputs_give_fp32_loss():
    loss = clreg_loss(ANCHOR.bfloat16(), POSITIVE.bfloat16(), NEGATIVES.bfloat16(), 0.5)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("form", ["dpo", "infonce"])
def test_symmetric_variant_by_hand(form):
    by_hand = dpo_by_hand if form == "dpo" else infonce_by_hand
    retain_pos = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 2.0, 0.0], [0.0, -1.0, 1.0]])
    expected = 0.5 * (by_hand(ANCHOR, POSITIVE, NEGATIVES, 0.4) + by_hand(NEGATIVES, retain_pos, ANCHOR, 0.4))
    loss = clreg_term(ANCHOR, POSITIVE, NEGATIVES, 0.4, form, symmetric=True, z_retain_pos=retain_pos)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert clreg_term(ANCHOR, POSITIVE, NEGATIVES, 0.4, form).item() == pytest.approx(
        by_hand(ANCHOR, POSITIVE, NEGATIVES, 0.4), rel=1e-5
    )


def test_errors():
    with pytest.raises(ValueError, match="allowed: dpo, infonce"):
        clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 0.5, form="triplet")
    with pytest.raises(ValueError, match="tau"):
        clreg_loss(ANCHOR, POSITIVE, NEGATIVES, 0.0)
    with pytest.raises(ValueError, match="negatives"):
        clreg_loss(ANCHOR, POSITIVE, NEGATIVES[:0], 0.5)
    with pytest.raises(ValueError, match="anchor and positive"):
        clreg_loss(ANCHOR, POSITIVE[:1], NEGATIVES, 0.5)
    with pytest.raises(ValueError, match="z_retain_pos"):
        clreg_term(ANCHOR, POSITIVE, NEGATIVES, 0.5, "dpo", symmetric=True)


def mean_anchor_negative_cosine(a: torch.Tensor, n: torch.Tensor) -> float:
    return float(cosines(a.detach(), n.detach()).mean())


@pytest.mark.parametrize("form", ["dpo", "infonce"])
@pytest.mark.parametrize("seed", range(5))
def test_proposition_3_2_a_step_lowers_anchor_negative_similarity(form, seed):
    g = torch.Generator().manual_seed(seed)
    anchor = torch.nn.Parameter(torch.randn(4, 16, generator=g))
    positive = torch.nn.Parameter(anchor.detach() + 0.3 * torch.randn(4, 16, generator=g))
    negatives = torch.nn.Parameter(torch.randn(6, 16, generator=g))
    before = mean_anchor_negative_cosine(anchor, negatives)
    optimizer = torch.optim.SGD([anchor, positive, negatives], lr=0.05)
    clreg_loss(anchor, positive, negatives, tau=0.5, form=form).backward()
    optimizer.step()
    assert mean_anchor_negative_cosine(anchor, negatives) < before


@pytest.mark.parametrize("form", ["dpo", "infonce"])
@pytest.mark.parametrize("seed", range(3))
def test_proposition_3_2_through_a_linear_encoder(form, seed):
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(8, 16)
    x_f, x_f_pos, x_r = torch.randn(4, 8), torch.randn(4, 8), torch.randn(6, 8)
    x_f_pos = x_f + 0.1 * x_f_pos
    before = mean_anchor_negative_cosine(encoder(x_f), encoder(x_r))
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.05)
    clreg_loss(encoder(x_f), encoder(x_f_pos), encoder(x_r), tau=0.5, form=form).backward()
    optimizer.step()
    with torch.no_grad():
        assert mean_anchor_negative_cosine(encoder(x_f), encoder(x_r)) < before


def test_dropout_view_is_reproducible_with_the_same_generator():
    h = torch.randn(2, 5, 8)
    a = dropout_view(h, 0.2, torch.Generator().manual_seed(7))
    b = dropout_view(h, 0.2, torch.Generator().manual_seed(7))
    c = dropout_view(h, 0.2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dropout_view_preserves_scale_in_expectation():
    h = torch.ones(200_000)
    view = dropout_view(h, 0.2, torch.Generator().manual_seed(0))
    kept = view != 0
    assert torch.allclose(view[kept], torch.tensor(1 / 0.8))
    assert (~kept).float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert view.mean().item() == pytest.approx(1.0, abs=0.01)


def test_dropout_view_p_zero_is_identity_and_dtype_is_kept():
    h = torch.randn(3, 4)
    assert dropout_view(h, 0.0, None) is h
    assert dropout_view(h.bfloat16(), 0.1, torch.Generator().manual_seed(0)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_view(h, 1.0, None)


def test_dropout_view_passes_gradients_to_kept_units():
    h = torch.randn(4, 6, requires_grad=True)
    view = dropout_view(h, 0.5, torch.Generator().manual_seed(1))
    view.sum().backward()
    assert torch.equal(h.grad != 0, view.detach() != 0)
