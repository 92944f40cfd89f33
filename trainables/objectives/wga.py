"""WGA: weighted gradient ascent (Wang et al., 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective
and Go Beyond", https://arxiv.org/abs/2502.19301).

Definition and defaults as in open-unlearning (`configs/trainer/WGA.yaml`, `src/trainer/unlearn/wga.py`,
`compute_wga_loss` in `src/trainer/utils.py`), which already scores answer positions only and averages over the
answer tokens of the whole batch. open-unlearning builds a reference model for WGA that its loss never reads; here
it is loaded only for the kl retain loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import answer_token_nll


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -(1/N) * sum_t w_t * l_t`, `l_t = -log p_t`, `w_t = p_t^beta` held constant, over the N answer tokens.

    Gradient ascent with each token's gradient scaled by its own (detached) probability to the power beta: tokens
    the model still predicts keep the full ascent step, tokens already unlikely get almost none, so the loss stops
    pushing where forgetting is done instead of driving the likelihood to zero without bound. beta -> 0 gives
    gradient ascent.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: `beta` (exponent of the weight, > 0).

    Returns:
        Scalar fp32; 0 for a batch without answer tokens.
    """
    nll = answer_token_nll(forget.logits, forget.labels)
    weight = torch.exp(-params["beta"] * nll.detach())
    return -(weight * nll).sum() / max(nll.numel(), 1)
