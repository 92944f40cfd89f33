"""DPO (IdkDPO): the preference loss of a refusal over the forget answer, by hand from `handmade`."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.objectives import SequenceOutputs, npo
from trainables.objectives.dpo import forget_loss

from .handmade import LABELS, LOGITS, REF_LOGITS, log_sigmoid, seq_nll

# The preferred answers' batch: other logits for the same labels (model and reference roles of the tensors swapped).
WIN_LOGITS, WIN_REF = REF_LOGITS, LOGITS


def dpo_by_hand(beta: float) -> float:
    lose_theta, _ = seq_nll(LOGITS)
    lose_ref, _ = seq_nll(REF_LOGITS)
    win_theta, _ = seq_nll(WIN_LOGITS)
    win_ref, _ = seq_nll(WIN_REF)
    terms = []
    for i in range(2):
        margin = (win_ref[i] - win_theta[i]) - (lose_ref[i] - lose_theta[i])
        terms.append(log_sigmoid(beta * margin))
    return -(2 / beta) * sum(terms) / 2


def outputs(win_logits: torch.Tensor = WIN_LOGITS, lose_logits: torch.Tensor = LOGITS) -> SequenceOutputs:
    return SequenceOutputs(lose_logits, LABELS, REF_LOGITS,
                           alternate=SequenceOutputs(win_logits, LABELS, WIN_REF))


@pytest.mark.parametrize("beta", [0.1, 1.0, 2.5])
def test_dpo_by_hand(beta):
    assert forget_loss(outputs(), {"beta": beta}).item() == pytest.approx(dpo_by_hand(beta), rel=1e-5)


def test_equal_log_ratios_give_two_over_beta_log_two():
    same = SequenceOutputs(LOGITS, LABELS, REF_LOGITS, alternate=SequenceOutputs(LOGITS, LABELS, REF_LOGITS))
    assert forget_loss(same, {"beta": 0.5}).item() == pytest.approx(2 / 0.5 * math.log(2), rel=1e-6)


def test_a_preferred_side_at_its_reference_leaves_npo():
    """w_i = 0 when the model equals the reference on the preferred answers: the loss is NPO's."""
    out = SequenceOutputs(LOGITS, LABELS, REF_LOGITS, alternate=SequenceOutputs(REF_LOGITS, LABELS, REF_LOGITS))
    assert forget_loss(out, {"beta": 0.3}).item() == pytest.approx(
        npo.forget_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), {"beta": 0.3}).item(), rel=1e-6)


def test_descent_raises_the_refusal_and_lowers_the_forget_answer():
    win = WIN_LOGITS.clone().requires_grad_(True)
    lose = LOGITS.clone().requires_grad_(True)
    forget_loss(outputs(win, lose), {"beta": 1.0}).backward()
    # row 0, position 1 predicts token 2 in both batches: descent (-grad) raises it in the preferred batch and
    # lowers it in the forget batch
    assert win.grad[0, 1, 2] < 0 and lose.grad[0, 1, 2] > 0
    assert torch.equal(win.grad[0, 0], torch.zeros(3)) and torch.equal(lose.grad[1, 4], torch.zeros(3))


def test_missing_preferred_answers_are_named():
    with pytest.raises(ValueError, match="dpo needs the forget prompts with the preferred answers"):
        forget_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), {"beta": 0.1})
    no_ref = SequenceOutputs(LOGITS, LABELS, REF_LOGITS, alternate=SequenceOutputs(WIN_LOGITS, LABELS))
    with pytest.raises(ValueError, match="ref_logits"):
        forget_loss(no_ref, {"beta": 0.1})
