"""The run record: versions as installed, batch arithmetic per trial, git commit of a real checkout."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from orchestrator.config_files import load_config
from orchestrator.run_record import PACKAGES, SOURCE_DIR, collect, git_commit
from orchestrator.trial_record import build_record
from trainables.config import TrialConfig
from trainables.metrics.definitions import DEFINITIONS_VERSION


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def test_record_of_a_run() -> None:
    record = collect("fingerprint-1", source_dir=SOURCE_DIR)
    cfg = load_config(TrialConfig, None, ["train.num_workers=2", "train.micro_batch_size=4", "train.grad_accum=3",
                                          "eval.definitions=exact"])
    params = record.params(cfg)
    for name in PACKAGES:
        assert params[f"record.versions.{name}"] == metadata.version(name)
    assert params["record.world_size"] == "2"
    assert params["record.effective_batch_size"] == "24"  # 4 sequences x 3 accumulation steps x 2 workers
    assert params["record.benchmark_fingerprint"] == "fingerprint-1"
    assert params["record.eval_definitions"] == "exact"
    assert params["record.eval_definitions_version"] == DEFINITIONS_VERSION["exact"]
    assert params["record.clreg_sweep_version"] == metadata.version("clreg-sweep")
    assert all(isinstance(v, str) for v in params.values())


def test_trial_record_reads_the_trials_own_config() -> None:
    """A space may search the batch settings: the record follows the trial's values, not the base's."""
    record = collect("fp", source_dir=SOURCE_DIR)
    base = TrialConfig().model_dump(mode="json", by_alias=True)
    trial = build_record("t", base, {"train.micro_batch_size": 2, "train.grad_accum": 5}, [], num_layers=8)
    params = record.params(TrialConfig.model_validate(trial.config))
    assert params["record.effective_batch_size"] == "10" and params["record.world_size"] == "1"
    assert params["record.eval_definitions"] == "open-unlearning"


def test_git_commit_of_a_checkout_clean_and_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "src"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head and len(head) == 40
    (repo / "a.py").write_text("x = 2\n")
    assert git_commit(repo) == f"{head}-dirty"
    # A folder inside the checkout (an installed package in a venv there) is not the checkout's code.
    (repo / "site-packages").mkdir()
    assert git_commit(repo / "site-packages") is None


def test_outside_a_checkout_there_is_no_commit_and_no_error(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    record = collect("fp", source_dir=tmp_path)
    assert record.git_commit is None and "record.git_commit" not in record.params(TrialConfig())


@pytest.mark.skipif(not (SOURCE_DIR / ".git").exists(), reason="the project is not run from a git checkout")
def test_this_checkout_is_recorded() -> None:
    head = git(SOURCE_DIR, "rev-parse", "HEAD")
    assert git_commit(SOURCE_DIR) in (head, f"{head}-dirty")
