"""Warm slots against cold runs, on a real local Ray cluster with real DeepSpeed engines (CPU, gloo).

A trial in a warm slot must train bit for bit like the same trial as a Ray Train run of its own: each case runs
cold (`build_trainer` + `fit_to_end`) and warm (`orchestrator.slots.run_in_slot`) and compares every metric of the
outcome but the clocks. The warm cases run one after another in the same slot (one pool per worker count), so all
but the first read the tokenizer, data, reference model and starting weights the slot kept from an earlier trial.
Between them the slot also serves a diverging trial and a cancelled one, which must leave it as good as new.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest

from orchestrator.cluster import ray_cluster
from orchestrator.config_files import load_config
from orchestrator.prepare import prepare
from orchestrator.slots import SlotShape, run_in_slot, start_pool
from trainables.config import LoraConfig, TrialConfig
from trainables.engine.job import WorkerJob
from trainables.engine.outcome import NonFiniteLossError
from trainables.engine.trainer import build_trainer, fit_to_end

pytestmark = pytest.mark.slow

# Per run, not per trial: wall clocks, the set-up phases, and where it ran.
CLOCK_KEYS = ("seconds", "node_id", "reported_at", "worker_started_at")


@pytest.fixture(scope="module")
def cluster():
    # Logical CPUs: the idle slots keep theirs (1 + 2) while a cold run takes its own (up to 2); runs never overlap.
    with ray_cluster(num_cpus=5):
        yield


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory, small_overrides, prepare_cache) -> TrialConfig:
    root = tmp_path_factory.mktemp("warm")
    return load_config(TrialConfig, None, small_overrides + [f"prepare.cache_dir={prepare_cache}",
                                                   f"output_dir={root}", "train.epochs=2", "train.lr=5e-4",
                                                   "train.micro_batch_size=2"])


@pytest.fixture(scope="module")
def prepared(cluster, base_cfg):
    return prepare(base_cfg, log=lambda *_: None)


@pytest.fixture(scope="module")
def pools(cluster, base_cfg):
    """One pool per worker count, made on first use (building its first slot ahead, as a sweep's does); ended
    with the module."""
    import ray

    made: dict[int, object] = {}

    def pool(workers: int):
        if workers not in made:
            train = base_cfg.train.model_copy(update={"num_workers": workers})
            made[workers] = start_pool(f"test-slots-{workers}", SlotShape.of(train), recycle_trials=100,
                                       max_growth_gb=100, prebuild=1)
        return made[workers]

    yield pool
    for p in made.values():
        ray.get(p.shutdown.remote())
        ray.kill(p)


def _trial(base: TrialConfig, name: str, workers: int = 1, zero: int = 0, **updates) -> TrialConfig:
    """`base` with method `name` on `workers` workers at ZeRO stage `zero`; `updates` of whole sections, or of
    fields of `method` / `train` given as dicts."""
    return base.model_copy(update={
        "method": base.method.model_copy(update={"name": name, **updates.pop("method", {})}),
        "train": base.train.model_copy(update={"num_workers": workers, "zero_stage": zero,
                                               **updates.pop("train", {})}),
        **updates,
    })


def _job(cfg: TrialConfig, prepared, out: Path) -> WorkerJob:
    return WorkerJob(trial=cfg, task="unlearn", model_dir=prepared.target_dir, output_dir=str(out),
                     oracle_reference=prepared.oracle_reference)


def _trial_metrics(final: dict) -> dict:
    return {k: v for k, v in final.items() if not any(k.endswith(c) for c in CLOCK_KEYS)}


def _same(cold: dict, warm: dict) -> list[str]:
    """Keys whose values differ (NaN equals NaN)."""
    def equal(a, b):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return sorted(k for k in cold.keys() | warm.keys() if not equal(cold.get(k), warm.get(k)))


CASES = {
    # name: (method, workers, ZeRO stage, other updates); 1-worker cases first: they share one slot, in this order
    "simnpo+clreg": ("simnpo", 1, 0, {}),
    "npo": ("npo", 1, 0, {}),  # the first to need the reference model: the slot keeps it for the next two
    "rmu+clreg": ("rmu", 1, 0, {"method": {"layer": 2}}),
    "dpo": ("dpo", 1, 0, {}),
    "graddiff+lora": ("graddiff", 1, 0, {"model": LoraConfig(rank=4)}),
    "npo-zero2": ("npo", 2, 2, {}),
    "npo-zero3": ("npo", 2, 3, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_trial_in_a_warm_slot_equals_its_cold_run(case, prepared, base_cfg, pools):
    method, workers, zero, updates = CASES[case]
    updates = dict(updates)
    if "model" in updates:
        updates["model"] = base_cfg.model.model_copy(update={"lora": updates["model"]})
    cfg = _trial(base_cfg, method, workers, zero, **updates)
    root = Path(base_cfg.output_dir) / case
    cold = fit_to_end(build_trainer(_job(cfg, prepared, root / "cold"), storage_path=str(root / "ray"), name=case),
                      root / "cold")
    reports: list[dict] = []
    warm = run_in_slot(pools(workers), _job(cfg, prepared, root / "warm"), max_failures=0, relay=reports.append)

    assert cold["trial_complete"] == 1 and cold["epoch"] == 2
    assert _same(_trial_metrics(cold), _trial_metrics(warm)) == []
    assert "forget_quality" in warm and "model_utility" in warm
    assert [r["epoch"] for r in reports] == [1, 2]  # every epoch's report reached the driver, in order
    assert reports[-1]["train/loss"] == warm["train/loss"]
    assert (root / "warm" / "checkpoint" / "trial_state.json").is_file()


def test_a_diverged_and_a_cancelled_trial_leave_the_slot_serving(prepared, base_cfg, pools):
    """A diverging trial ends with its reason and no error; a cancelled one stops at its next report; the slot
    (the same processes) then trains the next trial exactly as a cold run does."""
    import ray

    pool = pools(1)
    root = Path(base_cfg.output_dir) / "faults"
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run_in_slot(pool, _job(_trial(base_cfg, "simnpo", train={"lr": 1e30}), prepared, root / "diverged"),
                    max_failures=0, relay=lambda _: None)

    long = _trial(base_cfg, "simnpo", train={"epochs": 50})
    run_id = ray.get(pool.start.remote(dataclasses.asdict(_job(long, prepared, root / "cancelled"))))
    deadline = time.monotonic() + 120
    while not (status := ray.get(pool.poll.remote(run_id)))["reports"]:
        assert time.monotonic() < deadline, "no report from the long trial"
        time.sleep(0.2)
    pool.cancel.remote(run_id)
    while status["state"] == "running":
        assert time.monotonic() < deadline, "the cancelled trial did not stop"
        time.sleep(0.2)
        status = ray.get(pool.poll.remote(run_id))
    assert status["state"] == "cancelled"
    assert not (root / "cancelled" / "run_outcome.json").exists()

    (before,) = ray.get(pool.stats.remote())
    cfg = _trial(base_cfg, "graddiff")
    cold = fit_to_end(build_trainer(_job(cfg, prepared, root / "cold"), storage_path=str(root / "ray"),
                                    name="after-faults"), root / "cold")
    warm = run_in_slot(pool, _job(cfg, prepared, root / "warm"), max_failures=0, relay=lambda _: None)
    (after,) = ray.get(pool.stats.remote())
    assert after["pids"] == before["pids"]  # the same slot, not a rebuilt one
    assert after["trials"] == before["trials"] + 1
    assert _same(_trial_metrics(cold), _trial_metrics(warm)) == []


def test_a_slot_is_recycled_after_its_trials(prepared, base_cfg):
    """`search.slot_recycle_trials`: after that many trials the slot's processes are replaced."""
    import ray

    pool = start_pool("test-slots-recycle", SlotShape.of(base_cfg.train), recycle_trials=1, max_growth_gb=100)
    try:
        root = Path(base_cfg.output_dir) / "recycle"
        cfg = _trial(base_cfg, "graddiff", train={"epochs": 1})
        run_in_slot(pool, _job(cfg, prepared, root / "a"), max_failures=0, relay=lambda _: None)
        assert ray.get(pool.stats.remote()) == []  # recycled after its one trial: no slot left holding CPUs
    finally:
        ray.get(pool.shutdown.remote())
        ray.kill(pool)
