"""Negative Preference Optimization (Zhang et al., 2024, https://arxiv.org/abs/2404.05868).

Definition and defaults as in open-unlearning (`configs/trainer/NPO.yaml`, `src/trainer/unlearn/npo.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from trainables.objectives.outputs import SequenceOutputs, reference_logits
from trainables.objectives.tokens import sequence_nll


def log_ratio(outputs: SequenceOutputs, needed_by: str) -> torch.Tensor:
    """`log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i)` of each sequence, `[B]`: `S_ref,i - S_theta,i` in summed NLLs.

    Raises:
        ValueError: when `outputs.ref_logits` is None, naming `needed_by`.
    """
    s_theta, _ = sequence_nll(outputs.logits, outputs.labels)
    s_ref, _ = sequence_nll(reference_logits(outputs, needed_by), outputs.labels)
    return s_ref - s_theta


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -(2/beta) * mean_i log sigma(-beta * r_i)`, `r_i = S_ref,i - S_theta,i`.

    `S` is the summed answer-token NLL of sequence i, so `-r_i = log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i)`: the
    loss is DPO with only a losing answer. Unlike gradient ascent it is bounded below by 0 and its gradient vanishes
    as the forget answers become unlikely, which slows the collapse; `2/beta` makes it tend to gradient ascent as
    beta -> 0.

    Args:
        forget: forget-batch outputs with `ref_logits` (`[B, L, V]` each, `labels` `[B, L]`).
        params: `beta` (inverse temperature, > 0).

    Returns:
        Scalar fp32.

    Raises:
        ValueError: when `forget.ref_logits` is None.
    """
    beta = params["beta"]
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio(forget, "npo")).mean()
