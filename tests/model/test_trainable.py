"""`train_only`: RMU's `method.trainable` pattern freezes every parameter it does not name."""

from __future__ import annotations

import pytest
import torch

from trainables.model.trainable import train_only


def model() -> torch.nn.Module:
    return torch.nn.ModuleDict({"layers": torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)]),
                                "head": torch.nn.Linear(2, 1)})


def trained(m: torch.nn.Module) -> list[str]:
    return [name for name, p in m.named_parameters() if p.requires_grad]


def test_every_parameter_by_default():
    m = model()
    assert train_only(m, None) == train_only(m, ".*") == 8 and len(trained(m)) == 8


def test_a_pattern_keeps_only_full_matches():
    m = model()
    assert train_only(m, r"layers\.(1|2)\.weight") == 2
    assert trained(m) == ["layers.1.weight", "layers.2.weight"]


def test_a_pattern_never_unfreezes_and_must_match_something():
    m = model()
    m["head"].requires_grad_(False)  # e.g. a LoRA model's frozen base
    assert train_only(m, r"head\..*|layers\.0\.bias") == 1 and trained(m) == ["layers.0.bias"]
    with pytest.raises(ValueError, match=r"method.trainable 'lm_head' matches none of the model's 1 trainable"):
        train_only(m, "lm_head")
