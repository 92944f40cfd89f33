"""The cluster path on one machine: a multi-node Ray cluster, a sweep submitted as a Ray Job, one MLflow server,
and a node lost in the middle of it.

A head without CPUs and three 1-CPU worker nodes (`ray.cluster_utils.Cluster`, real raylets sharing this machine's
disk as the shared storage), an `mlflow server` over HTTP on 127.0.0.1, and the sweep submitted with
`ray job submit` to the head's Jobs API, as a KubeRay RayJob does. Two concurrent 1-CPU trials can only run on
different worker nodes; once both have a checkpoint, the node of one of them is removed (killed, not drained), and
that trial must finish on another node from its checkpoint.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import ray

from tests.orchestrator.live_services import (
    WORKER_CLASSES,
    free_port,
    start_mlflow_server,
    stop_server,
    trial_checkpoints,
    wait_for,
)

pytestmark = pytest.mark.slow

NO_AGENT_YET = "No available agent to submit job"


class NodeRemover(threading.Thread):
    """Once every trial under `root` has a checkpoint, removes the node running one of the training workers."""

    def __init__(self, cluster, root: Path, trials: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.root, self.trials = cluster, root, trials
        self.removed: str | None = None
        self.worker_nodes: set[str] = set()  # nodes running Ray Train workers at the moment of the removal
        self.error: BaseException | None = None

    def run(self) -> None:
        from ray.util.state import list_actors

        try:
            wait_for(lambda: len(trial_checkpoints(self.root)) == self.trials, "a checkpoint of every trial")
            actors = [a for cls in WORKER_CLASSES
                      for a in list_actors(filters=[("class_name", "=", cls), ("state", "=", "ALIVE")])]
            self.worker_nodes = {a.node_id for a in actors}
            node = next(n for n in self.cluster.worker_nodes if n.node_id == actors[0].node_id)
            self.cluster.remove_node(node, allow_graceful=False)
            self.removed = node.node_id
        except BaseException as e:  # surfaced by the test, which joins the thread
            self.error = e


def test_ray_job_sweep_on_three_nodes_survives_a_lost_node(sweep_env, tmp_path):
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobStatus, JobSubmissionClient

    name, trials, epochs = "multinode", 2, 20
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path / "server.db", port)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1"})
    try:
        workers = {cluster.add_node(num_cpus=1).node_id for _ in range(3)}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)  # for the state API the remover uses; the sweep is the job's driver
        dashboard = "http://" + cluster.head_node.address_info["webui_url"]
        path = sweep_env.write(name, trials, trials, epochs=epochs, tracking_uri=uri, base=["train.max_failures=2"])
        remover = NodeRemover(cluster, sweep_env.sweep_dir(name), trials)
        remover.start()
        ray_cli = str(Path(sys.executable).with_name("ray"))
        clreg = shutil.which("clreg-sweep", path=str(Path(sys.executable).parent))
        submit = [ray_cli, "job", "submit", "--address", dashboard, "--submission-id", name, "--no-wait",
                  "--", clreg, "sweep", str(path), "--address", cluster.address]

        def submitted() -> subprocess.CompletedProcess | None:
            """The submission, or None while the nodes' job agents have not registered with the head yet (Ray
            answers 500 "No available agent to submit job, please try again later" right after start-up)."""
            done = subprocess.run(submit, cwd=sweep_env.root, capture_output=True, text=True, timeout=300)
            return None if NO_AGENT_YET in done.stderr else done

        # The agents start with their nodes; on a busy 2-core machine that took more than 120 s once (2026-12-06).
        result = wait_for(submitted, "a Ray job agent to accept the submission", timeout=300)
        assert result.returncode == 0, result.stderr
        jobs = JobSubmissionClient(dashboard)
        status = wait_for(lambda: (s := jobs.get_job_status(name)).is_terminal() and s, "the job")
        logs = jobs.get_job_logs(name)
        remover.join(timeout=5)
        parents, children = sweep_env.runs(name, tracking_uri=uri)
    finally:
        ray.shutdown()
        cluster.shutdown()
        stop_server(server)

    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "sweep multinode: 2 trials complete" in logs
    assert remover.error is None, remover.error
    # The two trials ran on two worker nodes at once; one of those nodes was lost.
    assert len(remover.worker_nodes) == 2 and remover.worker_nodes <= workers and remover.removed in workers
    assert len(parents) == 1 and len(children) == trials and all(c.info.status == "FINISHED" for c in children)
    final_nodes = {c.data.tags["clreg.node_id"] for c in children}
    assert final_nodes <= workers - {remover.removed}  # both finished on live nodes
    # The trial on the lost node resumed from its checkpoint (the other one may have too, if its Tune driver or
    # Train controller actor happened to live on that node).
    resumed = sorted(c.data.metrics["resumed_from_epoch"] for c in children)
    assert 1 <= resumed[-1] < epochs, resumed
    assert [t.state for t in sweep_env.study(name).trials] == [optuna.trial.TrialState.COMPLETE] * trials
    # Everything went to the server: the working directory's default store never got this sweep.
    assert sweep_env.runs(name) == ([], [])
