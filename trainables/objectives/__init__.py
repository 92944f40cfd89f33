"""Unlearning objectives as pure functions of model outputs: base methods, retain losses and CLReg.

Nothing here receives the model or runs a forward pass: a trial builds one `Objective` (`build_objective`), runs
the forwards its `needs` name, and passes their outputs (`ForwardOutputs`: logits, labels, reference logits, pooled
representations) to it, which returns `LossTerms` (base method via `unlearning_loss`, plus `lambda * L_CL`).
"""

from __future__ import annotations

from trainables.objectives.clreg import clreg_loss, clreg_term, dropout_view
from trainables.objectives.compose import LossTerms, unlearning_loss
from trainables.objectives.objective import CLRegTerm, ForwardNeeds, ForwardOutputs, Objective, build_objective
from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.registry import METHODS, MethodSpec, ResolvedMethod, resolve_method
from trainables.objectives.tokens import batch_nll, sequence_nll

__all__ = [
    "METHODS",
    "CLRegTerm",
    "ForwardNeeds",
    "ForwardOutputs",
    "LossTerms",
    "MethodSpec",
    "Objective",
    "ResolvedMethod",
    "SequenceOutputs",
    "batch_nll",
    "build_objective",
    "clreg_loss",
    "clreg_term",
    "dropout_view",
    "resolve_method",
    "sequence_nll",
    "unlearning_loss",
]
