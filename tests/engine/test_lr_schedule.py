"""The trial's learning-rate schedule: every optimizer step moves the weights, including the first two, which
DeepSpeed's `WarmupDecayLR` (forced warm-up of at least two steps from `warmup_min_lr`) used to run at lr 0."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrainConfig
from trainables.engine.deepspeed_config import deepspeed_config, linear_schedule, lr_factor


@pytest.mark.parametrize("warmup,total", [(0, 1), (0, 9), (1, 9), (3, 9), (5, 6), (12, 9)])
def test_factor_is_positive_at_every_step_peaks_after_warmup_and_then_decays(warmup, total):
    factors = [lr_factor(k, warmup, total) for k in range(total)]
    assert all(0 < f <= 1 for f in factors)
    ramp, decay = factors[:warmup], factors[warmup:]
    assert ramp == sorted(ramp) and len(set(ramp)) == len(ramp)
    assert decay == sorted(decay, reverse=True)
    if decay:
        assert decay[0] == 1.0 and decay[-1] == pytest.approx(1 / (total - warmup))


def test_no_warmup_runs_the_first_step_at_the_peak_lr():
    assert [lr_factor(k, 0, 4) for k in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [lr_factor(k, 2, 5) for k in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_first_engine_step_changes_the_weights(single_process_group, zero_stage):
    """A real DeepSpeed engine (gloo, CPU) with the trial's config: step 1 and step 2 each change the weights, at
    the lr the schedule gives, and the scheduler state survives a state-dict round trip (what checkpoints hold)."""
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    cfg = deepspeed_config(TrainConfig(lr=1e-2, zero_stage=zero_stage, micro_batch_size=4), "fp32", 1)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=list(model.parameters()), config=cfg,
                                      lr_scheduler=linear_schedule(0, 4))
    x, y = torch.randn(4, 8), torch.randn(4, 1)
    seen_lrs = []
    for _ in range(2):
        before = engine.module.weight.detach().clone()
        seen_lrs.append(engine.get_lr()[0])
        engine.backward(torch.nn.functional.mse_loss(engine(x), y))
        engine.step()
        assert not torch.equal(before, engine.module.weight.detach())
    assert seen_lrs == pytest.approx([1e-2, 0.75e-2])
    state = engine.lr_scheduler.state_dict()
    fresh = linear_schedule(0, 4)(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1e-2))
    fresh.load_state_dict(state)
    assert fresh.get_last_lr()[0] == pytest.approx(engine.get_lr()[0]) == pytest.approx(0.5e-2)
