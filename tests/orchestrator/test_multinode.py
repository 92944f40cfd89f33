"""The cluster path on one machine: a multi-node Ray cluster, a sweep submitted as a Ray Job, one MLflow server.

A head without CPUs and two 1-CPU worker nodes (`ray.cluster_utils.Cluster`, real raylets sharing this machine's
disk as the shared storage), an `mlflow server` over HTTP on 127.0.0.1, and the sweep submitted with
`ray job submit` to the head's Jobs API, as a KubeRay RayJob does. Two concurrent 1-CPU trials can only run on
different worker nodes, and both must report to the one server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray

from tests.orchestrator.live_services import free_port, start_mlflow_server, stop_server, wait_for

pytestmark = pytest.mark.slow


def test_sweep_as_a_ray_job_on_three_nodes_logs_to_one_mlflow_server(sweep_env, tmp_path):
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobStatus, JobSubmissionClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path / "server.db", port)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1"})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        dashboard = "http://" + cluster.head_node.address_info["webui_url"]
        path = sweep_env.write("multinode", 2, 2, tracking_uri=uri)
        ray_cli = str(Path(sys.executable).with_name("ray"))
        clreg = shutil.which("clreg-sweep", path=str(Path(sys.executable).parent))
        submitted = subprocess.run(
            [ray_cli, "job", "submit", "--address", dashboard, "--submission-id", "clreg-multinode", "--no-wait",
             "--", clreg, "sweep", str(path), "--address", cluster.address],
            cwd=sweep_env.root, capture_output=True, text=True, timeout=300)
        assert submitted.returncode == 0, submitted.stderr
        jobs = JobSubmissionClient(dashboard)
        status = wait_for(lambda: (s := jobs.get_job_status("clreg-multinode")).is_terminal() and s, "the job")
        logs = jobs.get_job_logs("clreg-multinode")
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        parents, children = sweep_env.runs("multinode", tracking_uri=uri)
    finally:
        ray.shutdown()
        cluster.shutdown()
        stop_server(server)

    assert len(parents) == 1 and len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    nodes = {c.data.tags["clreg.node_id"] for c in children}
    assert nodes == {w.node_id for w in workers}  # one trial on each worker node
    # Everything went to the server: no per-node or working-directory store got this sweep.
    assert sweep_env.runs("multinode") == ([], [])
    assert [t.state for t in sweep_env.study("multinode").trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert "sweep multinode: 2 trials complete" in logs
