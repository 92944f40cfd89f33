"""`unlearning_loss`: the total of each method from its terms."""

from __future__ import annotations

import pytest
import torch

from trainables.config import MethodConfig
from trainables.objectives import SequenceOutputs, resolve_method, unlearning_loss

from .handmade import LABELS, LOGITS, REF_LOGITS, seq_nll

FORGET = SequenceOutputs(LOGITS, LABELS, REF_LOGITS)
RETAIN = SequenceOutputs(REF_LOGITS, LABELS, LOGITS)  # another batch: roles of the two tensors swapped


def nll(logits: torch.Tensor) -> float:
    sums, counts = seq_nll(logits)
    return sum(sums) / sum(counts)


def test_graddiff_total_weights_both_terms():
    method = resolve_method(MethodConfig(name="graddiff", gamma=2.0, alpha=0.5))
    terms = unlearning_loss(method, FORGET, RETAIN)
    assert terms.forget.item() == pytest.approx(-nll(LOGITS), rel=1e-6)
    assert terms.retain.item() == pytest.approx(nll(REF_LOGITS), rel=1e-6)
    assert terms.total.item() == pytest.approx(2.0 * -nll(LOGITS) + 0.5 * nll(REF_LOGITS), rel=1e-6)
    assert terms.clreg is None


def test_gradascent_needs_no_retain_batch():
    terms = unlearning_loss(resolve_method(MethodConfig(name="gradascent", retain_loss="kl")), FORGET, None)
    assert terms.retain is None
    assert terms.total.item() == pytest.approx(-nll(LOGITS), rel=1e-6)


def test_undial_default_alpha_zero_needs_no_retain_batch():
    method = resolve_method(MethodConfig(name="undial"))
    terms = unlearning_loss(method, FORGET, None)
    assert terms.retain is None and terms.total.item() == pytest.approx(terms.forget.item())


def test_missing_retain_batch_is_an_error():
    with pytest.raises(ValueError, match="needs a retain batch"):
        unlearning_loss(resolve_method(MethodConfig(name="npo")), FORGET, None)


def test_kl_retain_term():
    method = resolve_method(MethodConfig(name="simnpo", retain_loss="kl"))
    at_ref = SequenceOutputs(REF_LOGITS, LABELS, REF_LOGITS.clone())
    terms = unlearning_loss(method, FORGET, at_ref)
    assert terms.retain.item() == pytest.approx(0.0, abs=1e-6)
    assert terms.total.item() == pytest.approx(0.125 * terms.forget.item(), rel=1e-6)


def test_pdu_total_is_the_lagrangian():
    method = resolve_method(MethodConfig(name="pdu", eps=0.3, gamma=2.0))
    terms = unlearning_loss(method, FORGET, RETAIN, dual_lambda=0.7)
    expected = 2.0 * terms.forget.item() + 0.7 * (nll(REF_LOGITS) - 0.3)
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="dual_lambda"):
        unlearning_loss(method, FORGET, RETAIN)


def test_wga_total_weights_both_terms():
    method = resolve_method(MethodConfig(name="wga", gamma=2.0, alpha=0.5))
    terms = unlearning_loss(method, FORGET, RETAIN)
    assert terms.retain.item() == pytest.approx(nll(REF_LOGITS), rel=1e-6)
    assert terms.total.item() == pytest.approx(2.0 * terms.forget.item() + 0.5 * nll(REF_LOGITS), rel=1e-6)


def test_satimp_default_total_is_one_tenth_forget_plus_retain():
    terms = unlearning_loss(resolve_method(MethodConfig(name="satimp")), FORGET, RETAIN)
    assert terms.total.item() == pytest.approx(0.1 * terms.forget.item() + nll(REF_LOGITS), rel=1e-6)


def test_ceu_needs_no_retain_batch():
    terms = unlearning_loss(resolve_method(MethodConfig(name="ceu", gamma=2.0)), FORGET, None)
    assert terms.retain is None and terms.total.item() == pytest.approx(2.0 * terms.forget.item())


def test_dual_lambda_is_ignored_by_other_methods():
    method = resolve_method(MethodConfig(name="graddiff"))
    with_lam = unlearning_loss(method, FORGET, RETAIN, dual_lambda=5.0)
    assert with_lam.total.item() == unlearning_loss(method, FORGET, RETAIN).total.item()


def test_total_backpropagates_into_both_batches():
    f = LOGITS.clone().requires_grad_(True)
    r = REF_LOGITS.clone().requires_grad_(True)
    method = resolve_method(MethodConfig(name="npo"))
    unlearning_loss(method, SequenceOutputs(f, LABELS, REF_LOGITS), SequenceOutputs(r, LABELS)).total.backward()
    assert f.grad.abs().sum() > 0 and r.grad.abs().sum() > 0
