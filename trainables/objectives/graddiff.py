"""Gradient difference: gradient ascent on the forget set plus descent on the retain set.

Definition as in open-unlearning (`configs/trainer/GradDiff.yaml`). The total `gamma * L_f + alpha * L_r` is formed
by `unlearning_loss`; here only the forget term, which is gradient ascent's (composed, not re-implemented).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.objectives.gradascent import forget_loss as gradascent_forget_loss
from trainables.objectives.outputs import SequenceOutputs


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -NLL(forget)`, gradient ascent's forget term.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`).
        params: unused (gamma and alpha are applied by `unlearning_loss`).

    Returns:
        Scalar fp32.
    """
    return gradascent_forget_loss(forget, params)
