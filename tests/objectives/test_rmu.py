"""RMU: the steering target, the masked activation MSE of its forget and embed_diff retain terms, by hand.

Labels are `handmade.LABELS`; RMU scores the positions that hold answer tokens (labels != -100), unshifted:
row 0 positions 2, 3; row 1 positions 1, 2, 3.
"""

from __future__ import annotations

import pytest
import torch

from trainables.objectives import SequenceOutputs
from trainables.objectives.retain import retain_loss
from trainables.objectives.rmu import activation_mse, embed_diff, forget_loss, steering_target

from .handmade import LABELS

ANSWER_POSITIONS = {0: [2, 3], 1: [1, 2, 3]}
HIDDEN = torch.tensor(  # [B=2, L=5, D=2]
    [
        [[9.0, 9.0], [1.0, -1.0], [0.5, 2.0], [3.0, 0.0], [-7.0, 7.0]],
        [[-5.0, 5.0], [2.0, 1.0], [0.0, -1.0], [1.5, 1.5], [8.0, 8.0]],
    ]
)
REF_HIDDEN = torch.tensor(
    [
        [[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [1.0, 1.0], [0.0, 0.0]],
        [[0.0, 0.0], [2.0, 0.0], [1.0, -1.0], [0.5, 2.5], [0.0, 0.0]],
    ]
)


def mse_by_hand(hidden: torch.Tensor, target) -> float:
    """mean over rows of (sum over the row's answer positions of mean over d of (h - t)^2) / positions."""
    rows = []
    for row, positions in ANSWER_POSITIONS.items():
        per_pos = []
        for pos in positions:
            t = target(row, pos)
            h = hidden[row, pos].tolist()
            per_pos.append(sum((a - b) ** 2 for a, b in zip(h, t)) / len(h))
        rows.append(sum(per_pos) / len(positions))
    return sum(rows) / len(rows)


def test_steering_target_has_length_c_and_is_fixed_by_its_seed():
    a, b, other = steering_target(16, 2.0, 0), steering_target(16, 2.0, 0), steering_target(16, 2.0, 1)
    assert a.norm().item() == pytest.approx(2.0, rel=1e-6)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert (a >= 0).all()  # uniform [0, 1) entries, as WMDP draws them
    assert torch.allclose(steering_target(16, 6.0, 0), 3 * a)


def test_activation_mse_toward_a_direction_by_hand():
    target = torch.tensor([3.0, 4.0])
    loss = activation_mse(HIDDEN, target, LABELS)
    assert loss.item() == pytest.approx(mse_by_hand(HIDDEN, lambda r, p: [3.0, 4.0]), rel=1e-6)
    # (row 0: positions 2 and 3 -> ((2.5^2 + 2^2)/2 + (0^2 + 4^2)/2) / 2; row 1 likewise over three positions)
    row0 = ((2.5**2 + 2.0**2) / 2 + (0.0 + 4.0**2) / 2) / 2
    row1 = ((1.0 + 3.0**2) / 2 + (3.0**2 + 5.0**2) / 2 + (1.5**2 + 2.5**2) / 2) / 3
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_forget_loss_steers_toward_c_times_u_and_ignores_prompt_and_padding():
    params = {"steering_coeff": 2.0, "direction_seed": 3.0}
    u = steering_target(2, 2.0, 3).tolist()
    loss = forget_loss(SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=HIDDEN), params)
    assert loss.item() == pytest.approx(mse_by_hand(HIDDEN, lambda r, p: u), rel=1e-6)
    scrambled = HIDDEN.clone()
    scrambled[0, 0] = scrambled[0, 4] = scrambled[1, 0] = scrambled[1, 4] = torch.tensor([1e3, -1e3])
    assert forget_loss(SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=scrambled), params).item() == \
        pytest.approx(loss.item(), rel=1e-6)
    at_target = torch.tensor(u).expand(2, 5, 2)
    assert forget_loss(SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=at_target), params).item() == \
        pytest.approx(0.0, abs=1e-12)


def test_every_sequence_weighs_the_same_whatever_its_answer_length():
    """Row 0 has two answer positions and row 1 three; each row's mean counts half."""
    hidden = torch.zeros(2, 5, 2)
    hidden[0, 2] = hidden[0, 3] = torch.tensor([2.0, 2.0])  # row 0: squared error 4 at each of its positions
    assert activation_mse(hidden, torch.zeros(2), LABELS).item() == pytest.approx(4.0 / 2)


def test_embed_diff_is_the_distance_to_the_frozen_layer_and_zero_there():
    out = SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=HIDDEN, ref_hidden=REF_HIDDEN)
    expected = mse_by_hand(HIDDEN, lambda r, p: REF_HIDDEN[r, p].tolist())
    assert embed_diff(out).item() == pytest.approx(expected, rel=1e-6)
    assert retain_loss(out, "embed_diff").item() == pytest.approx(expected, rel=1e-6)
    same = SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=REF_HIDDEN, ref_hidden=REF_HIDDEN)
    assert embed_diff(same).item() == 0.0


def test_gradients_pull_the_answer_positions_to_the_target_only():
    hidden = HIDDEN.clone().requires_grad_(True)
    params = {"steering_coeff": 2.0, "direction_seed": 0.0}
    forget_loss(SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=hidden), params).backward()
    target = steering_target(2, 2.0, 0)
    for row in range(2):
        for pos in range(5):
            g = hidden.grad[row, pos]
            if pos in ANSWER_POSITIONS[row]:  # d/dh of (1/(B n_row D)) sum (h - t)^2 = 2 (h - t) / (B n_row D)
                expected = 2 * (HIDDEN[row, pos] - target) / (2 * len(ANSWER_POSITIONS[row]) * 2)
                torch.testing.assert_close(g, expected)
            else:
                assert torch.equal(g, torch.zeros(2))


def test_missing_layer_outputs_are_named():
    with pytest.raises(ValueError, match="rmu needs the forget batch's outputs of its layer"):
        forget_loss(SequenceOutputs(torch.zeros(2, 5, 3), LABELS), {"steering_coeff": 2.0, "direction_seed": 0.0})
    with pytest.raises(ValueError, match="frozen model's outputs"):
        embed_diff(SequenceOutputs(torch.zeros(2, 5, 3), LABELS, hidden=HIDDEN))
