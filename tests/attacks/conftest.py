"""Fixtures of the attack tests: the trial config an attack runs under and the place of a 1-process worker."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.engine.job import WorkerPlace


def attack_config(steps: int | None = 4, lr: float | None = 3e-3, micro_batch: int = 4, **attack) -> TrialConfig:
    """A trial config whose relearning attack trains `steps` steps at `lr`, measuring forget_prob only (the cheap
    metric); `attack` overrides further `attack` fields."""
    return TrialConfig.model_validate({
        "data": {"max_length": 48},
        "eval": {"batch_size": 8, "max_new_tokens": 8, "layer_profile": False},
        "attack": {"metric": "forget_prob", "metrics": ["forget_prob"],
                   "relearn": {"steps": steps, "lr": lr, "micro_batch_size": micro_batch}, **attack},
    })


@pytest.fixture(scope="session")
def place() -> WorkerPlace:
    return WorkerPlace(rank=0, world=1, device=torch.device("cpu"))
