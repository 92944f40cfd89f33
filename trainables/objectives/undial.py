"""UNDIAL: self-distillation towards reference logits with the answer token pushed down
(Dong et al., 2024, https://arxiv.org/abs/2402.10052).

Defaults as in open-unlearning (`configs/trainer/UNDIAL.yaml`). Unlike open-unlearning's `compute_undial_loss`,
which averages over every position (prompt and padding included), only the positions that predict answer tokens
are scored, so the loss does not depend on prompt length or padding.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from trainables.objectives.outputs import SequenceOutputs, reference_logits
from trainables.objectives.tokens import answer_logits


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = mean_t CE(z_theta,t, q_t)`, `q_t = softmax(z_ref,t - beta * onehot(y_t))`, over answer positions t.

    The target is the reference distribution with the true token's logit lowered by beta, so the model forgets
    that token while keeping the reference's ranking of every other token (a bounded, stable target, unlike
    gradient ascent).

    Args:
        forget: forget-batch outputs with `ref_logits` (`[B, L, V]` each, `labels` `[B, L]`).
        params: `beta` (logit shift, > 0).

    Returns:
        Scalar fp32.

    Raises:
        ValueError: when `forget.ref_logits` is None.
    """
    z, y = answer_logits(forget.logits, forget.labels)
    z_ref, _ = answer_logits(reference_logits(forget, "undial"), forget.labels)
    shifted = z_ref - params["beta"] * F.one_hot(y, num_classes=z_ref.shape[-1]).to(z_ref.dtype)
    return F.cross_entropy(z, F.softmax(shifted, dim=-1))
