"""Which parameters a trial trains: all of them, or those whose names a method's pattern matches (RMU's
`method.trainable`, after WMDP, which trains only a few MLP projections around its layer)."""

from __future__ import annotations

import re

import torch

EVERY_PARAMETER = ".*"


def train_only(model: torch.nn.Module, pattern: str | None) -> int:
    """Freeze every trainable parameter of `model` whose name does not fully match `pattern`; returns how many
    parameter tensors stay trainable. `None` or `.*` changes nothing (a LoRA model's frozen base stays frozen).

    Raises:
        ValueError: when no trainable parameter matches, naming the pattern and a few parameter names.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if pattern is None or pattern == EVERY_PARAMETER:
        return len(trainable)
    kept = 0
    for name, p in trainable:
        if re.fullmatch(pattern, name):
            kept += 1
        else:
            p.requires_grad_(False)
    if kept == 0:
        names = ", ".join(name for name, _ in trainable[:4])
        raise ValueError(f"method.trainable {pattern!r} matches none of the model's {len(trainable)} trainable "
                         f"parameters (names like {names}); allowed: a regular expression that fully matches some")
    return kept
