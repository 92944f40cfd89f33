"""SimNPO: reference-free, length-normalised NPO (Fan et al., 2024, https://arxiv.org/abs/2410.07163).

Definition and defaults as in open-unlearning (`configs/trainer/SimNPO.yaml`, `src/trainer/unlearn/simnpo.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import sequence_nll


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -(2/beta) * mean_i log sigma(beta * a_i)`, `a_i = S_theta,i / |y_i| - delta`.

    Dividing by the answer length removes NPO's bias towards unlearning short answers harder than long ones, and
    replacing the reference likelihood by the margin `delta` removes the reference model.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: `beta` (inverse temperature, > 0) and `delta` (margin).

    Returns:
        Scalar fp32.
    """
    beta, delta = params["beta"], params["delta"]
    s_theta, n = sequence_nll(forget.logits, forget.labels)
    a = s_theta / n.clamp_min(1.0) - delta
    return -(2.0 / beta) * F.logsigmoid(beta * a).mean()
