"""Unlearning objectives as pure functions of model outputs: base methods, retain losses and CLReg.

Nothing here receives the model or runs a forward pass: the training loop builds `SequenceOutputs` (logits, labels
and, when `ResolvedMethod.needs_ref`, the frozen reference model's logits) and calls `unlearning_loss`, then adds
`lambda * clreg_term(...)` on representations it pooled at the target layer.
"""

from __future__ import annotations

from trainables.objectives.clreg import clreg_loss, clreg_term, dropout_view
from trainables.objectives.compose import LossTerms, unlearning_loss
from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.pdu import pdu_dual_step
from trainables.objectives.registry import METHODS, MethodSpec, ResolvedMethod, resolve_method
from trainables.objectives.tokens import batch_nll, sequence_nll

__all__ = [
    "METHODS",
    "LossTerms",
    "MethodSpec",
    "ResolvedMethod",
    "SequenceOutputs",
    "batch_nll",
    "clreg_loss",
    "clreg_term",
    "dropout_view",
    "pdu_dual_step",
    "resolve_method",
    "sequence_nll",
    "unlearning_loss",
]
