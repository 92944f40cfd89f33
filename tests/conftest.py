"""Shared test settings."""

from __future__ import annotations

import pytest

# A benchmark and model small enough for real Ray Train + DeepSpeed runs on a 2-core CI machine, still big
# enough that the fine-tuned target clearly knows its forget set.
SMALL_OVERRIDES = [
    "data.synthetic.num_authors=6", "data.synthetic.qa_per_author=4", "data.synthetic.forget_percent=34",
    "data.synthetic.num_world_facts=4", "data.max_length=48",
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
