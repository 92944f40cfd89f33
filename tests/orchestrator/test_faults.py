"""Fault injection on real sweeps: killed workers, a killed driver, a diverging trial, a lost tracking server.

Every fault is injected into the real thing (SIGKILL of a Ray Train worker or of the sweep driver, a `mlflow
server` stopped and restarted); nothing is mocked. A lost Ray node is in `test_multinode.py`, which has the
multi-node cluster.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable

import optuna
import psutil
import pytest

from orchestrator import cli
from orchestrator.cluster import orphaned_ray_agents
from tests.orchestrator.live_services import (
    WORKER_CLASSES,
    free_port,
    registered_checkpoints,
    start_mlflow_server,
    stop_server,
    trial_checkpoints,
    wait_for,
)

pytestmark = pytest.mark.slow

def _train_workers() -> list[psutil.Process]:
    """The live training worker processes on this machine (their titles name the actor class)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(c in part for part in proc.info["cmdline"] or [] for c in WORKER_CLASSES):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class WorkerKiller(threading.Thread):
    """Once `has_checkpoint()`, SIGKILLs every training worker process (one per trial here)."""

    def __init__(self, has_checkpoint: Callable[[], list]) -> None:
        super().__init__(daemon=True)
        self.has_checkpoint = has_checkpoint
        self.killed: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(self.has_checkpoint, "a checkpoint to resume from")
            workers = wait_for(_train_workers, "a training worker process")
            for proc in workers:
                proc.send_signal(signal.SIGKILL)
                self.killed.append(proc.pid)
        except BaseException as e:  # surfaced by the test, which joins the thread
            self.error = e


def test_killed_worker_resumes_from_its_newest_checkpoint(sweep_env, monkeypatch):
    """Fault 1: SIGKILL the trial's worker after its first checkpoint; its slot is rebuilt (Ray Train restarts the
    worker group of a cold trial) within train.max_failures=1, the epoch counter continues from the checkpoint, and
    the sweep completes."""
    monkeypatch.chdir(sweep_env.root)
    epochs = 15  # a window of several seconds in which to kill it
    path = sweep_env.write("worker-kill", 1, 1, epochs=epochs, base=["train.max_failures=1"])
    killer = WorkerKiller(lambda: trial_checkpoints(sweep_env.sweep_dir("worker-kill")))
    killer.start()
    code = cli.main(["sweep", str(path)])
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert len(killer.killed) == 1

    assert code == 0
    (child,) = sweep_env.runs("worker-kill")[1]
    assert child.info.status == "FINISHED"
    resumed = child.data.metrics["resumed_from_epoch"]
    assert 1 <= resumed < epochs, resumed  # restarted from a checkpoint, not from epoch 0
    assert child.data.metrics["epoch"] == epochs
    assert [t.state for t in sweep_env.study("worker-kill").trials] == [optuna.trial.TrialState.COMPLETE]


def test_worker_failures_beyond_max_failures_fail_the_run(sweep_env, tmp_path, monkeypatch, capsys):
    """Fault 1, bounded: with train.max_failures=0 a killed worker ends the run as failed (exit 1), and the run
    directory holds no final results that could pass for a finished run."""
    monkeypatch.chdir(tmp_path)
    sets = [f"--set={s}" for s in sweep_env.overrides + ["train.epochs=15", "train.max_failures=0",
                                                          f"output_dir={tmp_path}"]]
    killer = WorkerKiller(lambda: registered_checkpoints(tmp_path / "killed", "ray/*"))
    killer.start()
    code = cli.main(["run", *sets, "--name", "killed"])
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert code == 1
    assert "trial failed" in capsys.readouterr().err
    assert not (tmp_path / "killed" / "eval_aggregates.json").exists()
    assert not (tmp_path / "killed" / "run_outcome.json").exists()


def test_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(sweep_env, monkeypatch):
    """Fault 3: lr=1e30 makes the loss non-finite within a few steps: that trial stops at once, MLflow FAILED with
    the reason, Optuna FAIL; the other trial completes and the sweep ends normally."""
    monkeypatch.chdir(sweep_env.root)
    space = {"fixed": {"method.name": "simnpo"},
             "parameters": {"train.lr": {"type": "grid", "values": [1.0e30, 1.0e-4]}}}
    path = sweep_env.write("diverge", 2, 2, epochs=2, space=space, base=["train.max_failures=2"])
    assert cli.main(["sweep", str(path)]) == 0

    by_lr = {float(c.data.params["train.lr"]): c for c in sweep_env.runs("diverge")[1]}
    bad, good = by_lr[1e30], by_lr[1e-4]
    assert bad.info.status == "FAILED" and good.info.status == "FINISHED"
    assert "training loss became non-finite" in bad.data.tags["clreg.failure_reason"]
    assert "non-finite" in bad.data.tags["clreg.divergence"]
    states = {t.params["train.lr"]: t.state for t in sweep_env.study("diverge").trials}
    assert states == {1e30: optuna.trial.TrialState.FAIL, 1e-4: optuna.trial.TrialState.COMPLETE}
    # An outcome, not a fault: Tune ended both trials normally and retried neither.
    assert sweep_env.tune_trials("diverge") == [("TERMINATED", 0), ("TERMINATED", 0)]


def test_killed_driver_resumes_without_duplicates_or_zombies(sweep_env):
    """Fault 2: SIGKILL the sweep driver while its second trial runs; `resume` finishes the sweep with exactly the
    requested trials in Tune, Optuna and MLflow, and nothing left RUNNING.

    Tune saves its experiment state every 10 s or more (`TUNE_GLOBAL_CHECKPOINT_S`, auto), so a crash usually
    loses some state; the killed driver here saves only its first snapshot, to make the worst case certain: the
    restored experiment holds trial 1 as PENDING (it runs again, keeping its finished results) and knows nothing
    of trial 2, whose Optuna trial and MLflow run must be retired while Tune samples a replacement.
    """
    name, trials = "driver-kill", 2
    proc = sweep_env.spawn_sweep(sweep_env.write(name, trials, 1), TUNE_GLOBAL_CHECKPOINT_S="3600")
    try:
        def second_trial_running() -> bool:
            children = sweep_env.runs(name)[1]
            return (sum(c.info.status == "FINISHED" for c in children) == 1
                    and any(c.info.status == "RUNNING" for c in children))

        wait_for(second_trial_running, "the second trial to start")
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The Ray cluster the driver started goes down with it (its processes share the driver's fate).
    wait_for(lambda: not _train_workers(), "the killed sweep's training workers to exit", timeout=120)
    # Ray leaves the killed cluster's dashboard and runtime-env agents running; `resume`'s cluster ends them.
    orphans = orphaned_ray_agents()
    parents, children = sweep_env.runs(name)
    assert parents[0].info.status == "RUNNING"  # nobody could close it: the state a real crash leaves
    lost_trial = next(c.data.tags["clreg.trial_id"] for c in children if c.info.status == "RUNNING")

    assert cli.main(["resume", str(sweep_env.sweep_dir(name))]) == 0
    assert not [p.pid for p in orphans if p.is_running()]

    parents, children = sweep_env.runs(name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == trials and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["clreg.trial_id"] for c in children}) == trials
    assert sweep_env.tune_trials(name) == [("TERMINATED", 0)] * trials
    deleted = sweep_env.runs(name, deleted=True)[1]
    assert [c.data.tags["clreg.trial_id"] for c in deleted] == [lost_trial]
    assert "last experiment-state save" in deleted[0].data.tags["clreg.lost"]
    by_state = collections.Counter(t.state for t in sweep_env.study(name).trials)
    assert by_state == {optuna.trial.TrialState.COMPLETE: trials, optuna.trial.TrialState.FAIL: 1}
    failed = next(t for t in sweep_env.study(name).trials if t.state == optuna.trial.TrialState.FAIL)
    assert failed.user_attrs["tune_trial_id"] == lost_trial and "clreg.lost" in failed.user_attrs


def test_mlflow_server_outage_mid_sweep_is_waited_out(tmp_path):
    """Fault 5 (mid-sweep): the tracking server dies and comes back 5 s later; a metric logged in between is
    retried with backoff until it lands, not dropped."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking

    db, port = tmp_path / "mlflow.db", free_port()
    uri = f"http://127.0.0.1:{port}"
    servers = [start_mlflow_server(db, port)]
    try:
        runs = tracking.open_sweep(uri, "outage", "outage", {"search": {"num_trials": 1}})
        child = tracking.child_run(runs, "t1", {"clreg.tau": 0.3}, {})
        stop_server(servers[0])
        restart = threading.Timer(5.0, lambda: servers.append(start_mlflow_server(db, port)))
        restart.start()
        started = time.monotonic()
        tracking.log_metrics(runs, child, {"forget_quality": 0.25, "model_utility": 0.5}, step=1)
        waited = time.monotonic() - started
        restart.join()
        metrics = MlflowClient(uri).get_run(child).data.metrics
        assert metrics == {"forget_quality": 0.25, "model_utility": 0.5}
        assert waited >= 5.0  # it really waited for the server instead of failing or skipping
    finally:
        for server in servers:
            if server.poll() is None:
                stop_server(server)
