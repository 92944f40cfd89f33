"""A small batch whose answer positions are listed by hand, and plain-math reference functions.

The tests compute expected values from these lists with `math`/numpy, never with the helpers under test.

Batch: B=2, L=5, V=3. Labels (-100 = prompt or padding):
    row 0: [-100, -100, 2, 0, -100]  -> logits[0, 1] predicts 2, logits[0, 2] predicts 0   (2 answer tokens)
    row 1: [-100, 1, 1, 2, -100]     -> logits[1, 0] predicts 1, logits[1, 1] predicts 1,
                                        logits[1, 2] predicts 2                           (3 answer tokens)
Every other logit position (prompt, padding, last) must not influence any loss.
"""

from __future__ import annotations

import math

import torch

LABELS = torch.tensor([[-100, -100, 2, 0, -100], [-100, 1, 1, 2, -100]])
# (row, position, target) of every answer prediction, worked out from LABELS above.
ANSWER = [(0, 1, 2), (0, 2, 0), (1, 0, 1), (1, 1, 1), (1, 2, 2)]
IGNORED = [(0, 0), (0, 3), (0, 4), (1, 3), (1, 4)]

LOGITS = torch.tensor(
    [
        [[9.0, -9.0, 0.0], [1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [7.0, 7.0, -7.0], [-3.0, 4.0, 8.0]],
        [[0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [5.0, -5.0, 5.0], [6.0, 0.0, -6.0]],
    ]
)
REF_LOGITS = torch.tensor(
    [
        [[0.0, 3.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 0.0], [-4.0, 4.0, 0.0], [1.0, 1.0, 1.0]],
        [[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [0.0, -1.0, 2.0], [3.0, 3.0, 3.0], [0.0, 9.0, 0.0]],
    ]
)


def log_softmax(z: list[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def softmax(z: list[float]) -> list[float]:
    return [math.exp(v) for v in log_softmax(z)]


def token_nll(logits: torch.Tensor, row: int, pos: int, target: int) -> float:
    return -log_softmax(logits[row, pos].tolist())[target]


def seq_nll(logits: torch.Tensor) -> tuple[list[float], list[int]]:
    sums, counts = [0.0, 0.0], [0, 0]
    for row, pos, target in ANSWER:
        sums[row] += token_nll(logits, row, pos, target)
        counts[row] += 1
    return sums, counts


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def scramble_ignored(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A copy of `logits` with large random values at every non-answer position."""
    out = logits.clone()
    g = torch.Generator().manual_seed(seed)
    for row, pos in IGNORED:
        out[row, pos] = 50 * torch.randn(out.shape[-1], generator=g)
    return out
