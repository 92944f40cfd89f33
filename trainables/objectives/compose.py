"""Assembling a method's total loss from its forget term and the retain term.

`total = gamma * L_f + alpha * L_r` for every method with a retain term; gradascent's total is `gamma * L_f`; PDU's
is the Lagrangian `gamma * L_f + lam * (L_r - eps)` with the dual variable `lam` held by the training loop and moved
by `pdu_dual_step`. CLReg is added on top by the loop (`base + lambda * L_CL`), which records it in `clreg`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.registry import ResolvedMethod
from trainables.objectives.retain import retain_loss


@dataclass
class LossTerms:
    """The loss to back-propagate and its parts, for logging.

    Attributes:
        total: scalar to call `backward()` on.
        forget: the unweighted forget loss `L_f`.
        retain: the unweighted retain loss `L_r`, or None when the method has no retain term.
        clreg: the unweighted contrastive term `L_CL`, None unless the loop added it (it then also adds
            `lambda * L_CL` to `total`).
    """

    total: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor | None = None
    clreg: torch.Tensor | None = None


def unlearning_loss(
    method: ResolvedMethod,
    forget: SequenceOutputs,
    retain: SequenceOutputs | None,
    dual_lambda: float | None = None,
) -> LossTerms:
    """The base method's loss on one forget batch and one retain batch.

    Args:
        method: from `resolve_method`.
        forget: forget-batch outputs (with `ref_logits` when `method.spec.needs_ref`).
        retain: retain-batch outputs (with `ref_logits` for the kl retain loss); may be None when
            `method.uses_retain` is False (gradascent, or alpha = 0), in which case it is not read.
        dual_lambda: PDU's current dual variable (start at `method.params["alpha"]`), required for PDU; ignored
            by every other method, so a loop may pass the same state for all of them.

    Returns:
        The total and its terms.

    Raises:
        ValueError: when a needed retain batch, or PDU's dual variable, is missing.
    """
    name, params = method.spec.name, method.params
    l_f = method.spec.forget_loss(forget, params)
    if not method.uses_retain:
        return LossTerms(total=params["gamma"] * l_f, forget=l_f)
    if retain is None:
        raise ValueError(f"{name} has a retain term (alpha={params.get('alpha')}) and needs a retain batch")
    l_r = retain_loss(retain, method.retain_loss)
    if name == "pdu":
        if dual_lambda is None:
            raise ValueError("pdu needs dual_lambda, the current dual variable held by the training loop")
        total = params["gamma"] * l_f + dual_lambda * (l_r - params["eps"])
    else:
        total = params["gamma"] * l_f + params["alpha"] * l_r
    return LossTerms(total=total, forget=l_f, retain=l_r)
