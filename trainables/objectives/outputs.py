"""The typed container every objective receives: logits and labels of one batch, never the model.

Objectives are pure functions of tensors so they can be tested on hand-built values; the training loop runs the
forward passes (and the reference model's only when the method says it needs one, see `ResolvedMethod.needs_ref`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SequenceOutputs:
    """Model outputs of one batch of sequences.

    Attributes:
        logits: `[B, L, V]`, position `t` predicts token `t + 1` (HF convention); any float dtype, the objectives
            compute log-softmax in fp32.
        labels: `[B, L]` token ids on answer (and EOS) positions, -100 on prompt and padding positions.
        ref_logits: `[B, L, V]` logits of the frozen reference model (the model before unlearning) on the same
            batch, or None when the objective does not need them. Treated as constants (detached).
        hidden: `[B, L, D]` output of the method's own layer (RMU's), per token; None when the method reads none.
        ref_hidden: the reference model's output of that layer on the same batch (RMU's embed_diff retain loss).
        alternate: the same prompts with the answers a preference method prefers (DPO's "I don't know"s), row i the
            alternative of row i, with their own `ref_logits`; None when the method has no preference pairs.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    ref_logits: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    ref_hidden: torch.Tensor | None = None
    alternate: SequenceOutputs | None = None


def reference_logits(outputs: SequenceOutputs, needed_by: str) -> torch.Tensor:
    """`outputs.ref_logits`, detached; a clear error when the loop did not run the reference model.

    Raises:
        ValueError: when `ref_logits` is None, naming the objective that needs it.
    """
    if outputs.ref_logits is None:
        raise ValueError(f"{needed_by} needs ref_logits (the frozen reference model's logits on the same batch)")
    if outputs.ref_logits.shape != outputs.logits.shape:
        raise ValueError(
            f"{needed_by}: ref_logits shape {tuple(outputs.ref_logits.shape)} != logits shape "
            f"{tuple(outputs.logits.shape)}"
        )
    return outputs.ref_logits.detach()


def required(value: torch.Tensor | SequenceOutputs | None, what: str, needed_by: str):
    """`value`, or a clear error naming what the loop did not compute for `needed_by`.

    Raises:
        ValueError: when `value` is None.
    """
    if value is None:
        raise ValueError(f"{needed_by} needs {what}, and the forwards did not compute it")
    return value
