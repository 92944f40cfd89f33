"""PDU: constrained unlearning by primal-dual descent with a logit-margin flattening forget loss
(Entesari et al., 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language Models",
https://arxiv.org/abs/2506.05314).

Defaults as in open-unlearning (`configs/trainer/PDU.yaml`, `src/trainer/unlearn/pdu.py`), with two corrections:
the forget loss is taken over answer positions only (open-unlearning averages over every position, padding
included), and the dual variable is updated once per optimizer step from the all-reduced retain loss (open-unlearning
updates it per micro-batch on each rank without synchronisation, so ranks drift apart).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import answer_logits


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = mean_t (max_v z_t,v - mean_v z_t,v)^2` over the positions t that predict answer tokens.

    The squared gap between the top logit and the mean logit is zero exactly when the logits are flat (uniform
    output distribution); it needs no softmax and its gradient does not vanish near uniformity.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: unused (gamma, the dual variable and eps enter through `unlearning_loss` and `retain_term`).

    Returns:
        Scalar fp32.
    """
    z, _ = answer_logits(forget.logits, forget.labels)
    return ((z.max(dim=-1).values - z.mean(dim=-1)) ** 2).mean()


def pdu_dual_step(lam: float, retain_loss_mean: float, eps: float, eta: float) -> float:
    """Projected dual ascent on the constraint `L_r <= eps`: `lam <- max(0, lam + eta * (L_r - eps))`.

    Called once per optimizer step (through `dual_step`, the hook PDU registers) with `retain_loss_mean` = the
    retain loss of that step averaged over all workers and micro-batches (all-reduced), so every rank keeps the
    same dual variable whatever the data-parallel layout. A violated constraint
    (`L_r > eps`) raises the retain weight, a satisfied one lowers it, never below 0.

    Args:
        lam: current dual variable, >= 0.
        retain_loss_mean: the step's all-reduced mean retain loss.
        eps: the retain-loss bound.
        eta: dual step size, > 0.

    Returns:
        The next dual variable.
    """
    return max(0.0, lam + eta * (retain_loss_mean - eps))


def dual_start(params: Mapping[str, float]) -> float:
    """The dual variable before the first step: the method's `alpha` (the retain weight it starts from)."""
    return params["alpha"]


def dual_step(lam: float, retain_loss_mean: float, params: Mapping[str, float]) -> float:
    """`pdu_dual_step` with the method's `eps` and `eta`."""
    return pdu_dual_step(lam, retain_loss_mean, params["eps"], params["eta"])


def retain_term(retain_loss: torch.Tensor, lam: float, params: Mapping[str, float]) -> torch.Tensor:
    """The retain part of the Lagrangian, `lam * (L_r - eps)`: its gradient is `lam * grad L_r`, and its value is
    what the dual step pushes towards zero from above."""
    return lam * (retain_loss - params["eps"])
