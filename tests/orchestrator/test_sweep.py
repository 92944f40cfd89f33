"""Real sweeps: a local Ray cluster, Ray Tune + Optuna (SQLite study), MLflow (SQLite store), DeepSpeed trials.

The prepared model comes from the session's shared cache (`prepare_cache`), as a second sweep on a machine would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator import cli
from orchestrator.pareto import pareto_front

pytestmark = pytest.mark.slow

OBJECTIVES = ["forget_quality", "model_utility"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="module")
def overrides(small_overrides, prepare_cache) -> list[str]:
    return small_overrides + [f"prepare.cache_dir={prepare_cache}"]


def _sweep_file(workdir: Path, name: str, overrides: list[str], num_trials: int, concurrent: int) -> Path:
    base: dict = {}
    for item in overrides + ["train.epochs=1"]:
        key, _, value = item.partition("=")
        node = base
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    sweep = {
        "name": name,
        "base": base,
        "space": "clreg-default",
        "search": {"sampler": "random", "num_trials": num_trials, "max_concurrent": concurrent, "seed": 1},
        "storage": {"dir": str(workdir / "sweeps")},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _children(workdir: Path, sweep: str) -> tuple[list, list]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(sweep)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("clreg.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def _study(workdir: Path, sweep: str) -> optuna.Study:
    return optuna.load_study(study_name=f"clreg-sweep:{sweep}",
                             storage=f"sqlite:///{workdir / 'sweeps' / sweep / 'optuna.db'}")


def test_four_trial_sweep_logs_trials_study_and_pareto_front(workdir, overrides, monkeypatch):
    monkeypatch.chdir(workdir)
    assert cli.main(["sweep", str(_sweep_file(workdir, "four", overrides, 4, 2))]) == 0

    parents, children = _children(workdir, "four")
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    for c in children:
        assert c.info.status == "FINISHED"
        assert {"clreg.tau", "clreg.lambda", "clreg.layer", "train.lr"} <= set(c.data.params)
        assert all(m in c.data.metrics for m in OBJECTIVES + ["train/loss", "train/clreg_loss"])
        assert c.data.tags["method"] == "simnpo" and c.data.tags["clreg"] == "on"

    study = _study(workdir, "four")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4

    points = [[c.data.metrics[m] for m in OBJECTIVES] for c in children]
    on_front = set(pareto_front(points))
    assert {i for i, c in enumerate(children) if c.data.tags.get("pareto") == "true"} == on_front
    assert "pareto/hypervolume" in parents[0].data.metrics

    report = cli.main(["report", str(workdir / "sweeps" / "four")])
    assert report == 0
    text = (workdir / "sweeps" / "four" / "report.md").read_text()
    assert "Pareto front" in text and text.count("| * |") == len(on_front)


def test_interrupted_sweep_resumes_to_exactly_the_requested_trials(workdir, overrides):
    """SIGINT after 2 finished trials (Tune saves its state and stops), then `resume`: 4 of everything, once."""
    sweep_file = _sweep_file(workdir, "resumed", overrides, 4, 1)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(sweep_file)], cwd=workdir,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                finished = [c for c in _children(workdir, "resumed")[1] if c.info.status == "FINISHED"]
            except Exception:  # the experiment does not exist yet
                finished = []
            if len(finished) >= 2:
                break
            time.sleep(2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == cli.EXIT_INTERRUPTED
    parents, children = _children(workdir, "resumed")
    assert parents[0].info.status == "KILLED"  # an interrupted sweep never looks complete
    assert 2 <= len([c for c in children if c.info.status == "FINISHED"]) < 4

    assert cli.main(["resume", str(workdir / "sweeps" / "resumed")]) == 0

    parents, children = _children(workdir, "resumed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["clreg.trial_id"] for c in children}) == 4
    states = [t.state for t in _study(workdir, "resumed").trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 4
