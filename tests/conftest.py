"""Shared test settings."""

from __future__ import annotations

import os

import pytest

from benchmarks.common import free_port

# A benchmark and model small enough for real Ray Train + DeepSpeed runs on a 2-core CI machine, still big
# enough that the fine-tuned target clearly knows its forget set. 48 tokens truncate most of its rows (the longest
# is 79 with a 400-token vocabulary): that keeps the runs short, and no test compares with published numbers, so
# `data.max_truncated=1.0` allows it.
SMALL_OVERRIDES = [
    "data.synthetic.num_authors=6", "data.synthetic.qa_per_author=4", "data.synthetic.forget_percent=34",
    "data.synthetic.num_world_facts=4", "data.max_length=48", "data.max_truncated=1.0",
    "model.tiny.num_layers=4", "model.tiny.vocab_size=400",
    "prepare.epochs=25", "prepare.micro_batch_size=8",
    "eval.layer_profile=false", "eval.max_new_tokens=16",
]


@pytest.fixture(scope="session")
def small_overrides() -> list[str]:
    """`--set` overrides of a trial config for the small test benchmark and model."""
    return list(SMALL_OVERRIDES)


@pytest.fixture(scope="session")
def prepare_cache(tmp_path_factory):
    """One `prepare.cache_dir` for the session: trials and sweeps on the small config share one prepared model
    (its cache key ignores the unlearning settings), so `prepare` runs once, and its cache hit is exercised."""
    return tmp_path_factory.mktemp("prepare-cache")


@pytest.fixture(scope="session")
def single_process_group():
    """The environment a 1-process gloo DeepSpeed engine reads, so engines can be built in the test process.

    Session-wide and never torn down: DeepSpeed caches its communication backend per process, so a second engine
    after `destroy_process_group` fails ("group is not registered")."""
    env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
               DS_ACCELERATOR="cpu")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
