"""SatImp: gradient ascent with token weights for saturation and importance (Yang et al., 2025, "Exploring Criteria
of Loss Reweighting to Enhance LLM Unlearning", https://arxiv.org/abs/2505.11953).

Definition and defaults as in open-unlearning (`configs/trainer/SatImp.yaml`, `src/trainer/unlearn/satimp.py`,
`compute_satimp_loss` in `src/trainer/utils.py`), which already scores answer positions only and averages over the
answer tokens of the whole batch. The defaults are the config's, gamma = 0.1 and alpha = 1: `SatImp.__init__` and
`community/methods/SatImp/README.md` give the opposite pair (gamma = 1, alpha = 0.1), but `trainer=SatImp` runs with
the config's `method_args`. As for WGA, the reference model open-unlearning builds is loaded here only for the kl
retain loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import answer_token_nll


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -(1/N) * sum_t w_t * l_t`, `w_t = p_t^beta1 * (1 - p_t)^beta2` held constant, `l_t = -log p_t`, over
    the N answer tokens.

    The saturation factor `p^beta1` keeps ascending on tokens the model still predicts and lets those already
    unlikely rest (the paper finds it the stronger effect); the importance factor `(1 - p)^beta2` does the
    opposite and damps the tokens the model is near-certain of. The product peaks at `p = beta1 / (beta1 + beta2)`
    (5/6 at the defaults); beta2 = 0 is WGA with beta = beta1.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: `beta1` (saturation exponent, >= 0) and `beta2` (importance exponent, >= 0).

    Returns:
        Scalar fp32; 0 for a batch without answer tokens.
    """
    nll = answer_token_nll(forget.logits, forget.labels)
    p = torch.exp(-nll.detach())
    weight = p ** params["beta1"] * (1.0 - p) ** params["beta2"]
    return -(weight * nll).sum() / max(nll.numel(), 1)
