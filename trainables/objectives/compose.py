"""Assembling a method's total loss from its forget term and the retain term.

`total = gamma * L_f + alpha * L_r` for every method with a retain term; gradascent's total is `gamma * L_f`; a
method with a dual variable (`MethodSpec.dual`, PDU) adds its own retain term, for PDU the Lagrangian's
`lam * (L_r - eps)`, with `lam` held by the objective (`objective.Objective`), which also adds CLReg on top
(`base + lambda * L_CL`) and records it in `clreg`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.registry import ResolvedMethod
from trainables.objectives.retain import retain_loss
from trainables.report_keys import LOSS_TERMS


@dataclass
class LossTerms:
    """The loss to back-propagate and its parts, for logging.

    Attributes:
        total: scalar to call `backward()` on.
        forget: the unweighted forget loss `L_f`.
        retain: the unweighted retain loss `L_r`, or None when the method has no retain term.
        clreg: the unweighted contrastive term `L_CL`, None unless CLReg is trained (`total` then includes
            `lambda * L_CL`).
    """

    total: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor | None = None
    clreg: torch.Tensor | None = None

    def values(self) -> dict[str, float]:
        """The terms that are set, as floats under their `trainables.report_keys.LOSS_TERMS` names."""
        named = {"loss": self.total, "forget": self.forget, "retain": self.retain, "clreg": self.clreg}
        return {term: named[term].item() for term in LOSS_TERMS if named[term] is not None}


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
        dual_lambda: the current dual variable, required by a method with one (`method.spec.dual`, PDU); ignored
            by every other method.

    Returns:
        The total and its terms.

    Raises:
        ValueError: when a needed retain batch, or the method's dual variable, is missing.
    """
    name, params = method.spec.name, method.params
    l_f = method.spec.forget_loss(forget, params)
    if not method.uses_retain:
        return LossTerms(total=params["gamma"] * l_f, forget=l_f)
    if retain is None:
        raise ValueError(f"{name} has a retain term (alpha={params.get('alpha')}) and needs a retain batch")
    l_r = retain_loss(retain, method.retain_loss)
    dual = method.spec.dual
    if dual is None:
        return LossTerms(total=params["gamma"] * l_f + params["alpha"] * l_r, forget=l_f, retain=l_r)
    if dual_lambda is None:
        raise ValueError(f"{name} needs dual_lambda, the current dual variable held by its objective")
    return LossTerms(total=params["gamma"] * l_f + dual.retain_term(l_r, dual_lambda, params), forget=l_f, retain=l_r)
