"""Retain losses `L_r`: keep the model's behaviour on the retain set while it forgets.

`nll` is the mean answer-token NLL of the retain batch (open-unlearning's default); `kl` is `KL(p_ref || p_theta)`
averaged over the retain batch's answer positions (open-unlearning averages over every position, padding included;
here prompt and padding positions are excluded, as everywhere else); `embed_diff` is RMU's, on one layer's outputs
(`trainables.objectives.rmu.embed_diff`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.objectives.outputs import SequenceOutputs, reference_logits
from trainables.objectives.rmu import embed_diff
from trainables.objectives.tokens import answer_logits, batch_nll

RETAIN_LOSSES = ("nll", "kl", "embed_diff")
READS_REFERENCE = frozenset({"kl", "embed_diff"})  # the retain losses computed against the frozen reference model


def retain_loss(retain: SequenceOutputs, kind: str) -> torch.Tensor:
    """`L_r` of one retain batch.

    - `nll`: `NLL(retain) = sum_i S_i / sum_i |y_i|`.
    - `kl`: `mean_t sum_v p_ref,t,v * (log p_ref,t,v - log p_theta,t,v)` over answer positions t; zero when the
      model equals the reference, and it keeps the whole next-token distribution, not just the answer token.
    - `embed_diff`: the mean squared distance of the method layer's outputs to the reference model's on the answer
      positions (`retain.hidden`, `retain.ref_hidden`).

    Args:
        retain: retain-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`, `ref_logits` `[B, L, V]` for kl).
        kind: "nll", "kl" or "embed_diff".

    Returns:
        Scalar fp32.

    Raises:
        ValueError: for an unknown `kind`, `kl` without `ref_logits`, or `embed_diff` without the layer outputs.
    """
    if kind == "nll":
        return batch_nll(retain.logits, retain.labels)
    if kind == "kl":
        z, _ = answer_logits(retain.logits, retain.labels)
        z_ref, _ = answer_logits(reference_logits(retain, "the kl retain loss"), retain.labels)
        if z.shape[0] == 0:
            return z.sum() * 0.0
        log_p = F.log_softmax(z, dim=-1)
        log_p_ref = F.log_softmax(z_ref, dim=-1)
        return F.kl_div(log_p, log_p_ref, reduction="batchmean", log_target=True)
    if kind == "embed_diff":
        return embed_diff(retain)
    raise ValueError(f"unknown retain loss {kind!r}; allowed: {', '.join(RETAIN_LOSSES)}")
