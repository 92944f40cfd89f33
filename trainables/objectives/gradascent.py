"""Gradient ascent: push the forget answers' likelihood down without bound.

Definition as in open-unlearning (`configs/trainer/GradAscent.yaml`, `src/trainer/unlearn/grad_ascent.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import batch_nll


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -NLL(forget)`, the negated mean answer-token NLL of the forget batch.

    Unbounded below, which is why it collapses the model quickly; it is the baseline the other methods fix.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: unused (the weight gamma is applied by `unlearning_loss`).

    Returns:
        Scalar fp32.
    """
    return -batch_nll(forget.logits, forget.labels)
