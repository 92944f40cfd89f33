"""Whether a trial's workers fit a cluster: every worker on one node, all of them at once."""

from __future__ import annotations

import pytest

from orchestrator.cluster import check_trial_fits
from trainables.config import TrainConfig


def _train(**kw) -> TrainConfig:
    return TrainConfig(**kw)


@pytest.mark.parametrize(("train", "nodes"), [
    (_train(num_workers=2), [{"CPU": 2.0}]),
    (_train(num_workers=2, cpus_per_worker=2), [{"CPU": 2.0}, {"CPU": 3.0}]),
    (_train(num_workers=4, cpus_per_worker=1, gpus_per_worker=1), [{"CPU": 8.0, "GPU": 4.0}]),
    (_train(num_workers=1, gpus_per_worker=0.5), [{"CPU": 1.0, "GPU": 1.0}]),
])
def test_fits(train, nodes):
    check_trial_fits(train, nodes, "the cluster")


@pytest.mark.parametrize(("train", "nodes", "message"), [
    (_train(gpus_per_worker=1), [{"CPU": 2.0, "GPU": 0.0}], "0 GPUs in all"),
    # 5 CPUs in all, but no node has 3 for one worker
    (_train(num_workers=1, cpus_per_worker=3), [{"CPU": 2.0}, {"CPU": 2.0}, {"CPU": 1.0}], "at most 2 on one node"),
    # each node takes one 2-CPU worker, a trial needs three at once
    (_train(num_workers=3, cpus_per_worker=2), [{"CPU": 3.0}, {"CPU": 3.0}], "train.num_workers=3"),
    (_train(num_workers=1), [], "0 node(s)"),
])
def test_does_not_fit(train, nodes, message):
    with pytest.raises(ValueError, match="does not fit on the cluster") as info:
        check_trial_fits(train, nodes, "the cluster")
    assert message in str(info.value)
