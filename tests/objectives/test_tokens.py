from __future__ import annotations

import pytest
import torch

from trainables.objectives import batch_nll, sequence_nll
from trainables.objectives.tokens import answer_logits, answer_mask, answer_token_nll

from .handmade import ANSWER, LABELS, LOGITS, scramble_ignored, seq_nll, token_nll


def test_answer_mask_marks_shifted_answer_positions():
    expected = torch.zeros(2, 4, dtype=torch.bool)
    for row, pos, _ in ANSWER:
        expected[row, pos] = True
    assert torch.equal(answer_mask(LABELS), expected)


def test_answer_logits_selects_in_row_major_order():
    z, y = answer_logits(LOGITS.bfloat16(), LABELS)
    assert z.dtype == torch.float32 and z.shape == (5, 3)
    assert y.tolist() == [t for _, _, t in ANSWER]
    assert torch.equal(z[0], LOGITS[0, 1].bfloat16().float())


def test_sequence_nll_by_hand():
    sums, counts = seq_nll(LOGITS)
    s, n = sequence_nll(LOGITS, LABELS)
    assert s.tolist() == pytest.approx(sums, rel=1e-6)
    assert n.tolist() == counts == [2, 3]


def test_answer_token_nll_by_hand():
    expected = [token_nll(LOGITS, r, p, t) for r, p, t in ANSWER]
    assert answer_token_nll(LOGITS, LABELS).tolist() == pytest.approx(expected, rel=1e-6)
    assert answer_token_nll(scramble_ignored(LOGITS), LABELS).tolist() == pytest.approx(expected, rel=1e-6)


def test_batch_nll_is_token_weighted_mean():
    expected = sum(token_nll(LOGITS, r, p, t) for r, p, t in ANSWER) / len(ANSWER)
    assert batch_nll(LOGITS, LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_nll_ignores_prompt_and_padding_positions():
    scrambled = scramble_ignored(LOGITS)
    assert torch.allclose(sequence_nll(scrambled, LABELS)[0], sequence_nll(LOGITS, LABELS)[0])
    assert torch.allclose(batch_nll(scrambled, LABELS), batch_nll(LOGITS, LABELS))


def test_bf16_logits_are_scored_in_fp32():
    logits = LOGITS.bfloat16()
    s, _ = sequence_nll(logits, LABELS)
    assert s.dtype == torch.float32
    assert s.tolist() == pytest.approx(seq_nll(logits.float())[0], rel=1e-6)


def test_gradient_reaches_answer_logits_only():
    logits = LOGITS.clone().requires_grad_(True)
    batch_nll(logits, LABELS).backward()
    for row, pos, _ in ANSWER:
        assert logits.grad[row, pos].abs().sum() > 0
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[1, 3].abs().sum() == 0
