"""`clreg-sweep ui` without a browser: a real `mlflow server` on a SQLite store made by `orchestrator.tracking`."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psutil
import pytest
import requests

from orchestrator import cli, dashboard, tracking
from tests.orchestrator.live_services import free_port, ui_process

VIEW = "?workflowType=machine_learning"


def _sweep_dir(root: Path, tracking_uri: str, experiment_id: str, parent_run_id: str, name: str = "s1") -> Path:
    """A sweep directory as `run_sweep` leaves it, as far as `ui` reads it."""
    sweep_dir = root / "sweeps" / name
    sweep_dir.mkdir(parents=True)
    state = {"tracking_uri": tracking_uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id}
    (sweep_dir / dashboard.STATE_FILE).write_text(json.dumps(state))
    return sweep_dir


@pytest.fixture
def logged_sweep(tmp_path) -> tuple[Path, tracking.SweepRuns]:
    """A SQLite store with a sweep's experiment and parent run, and its sweep directory."""
    runs = tracking.open_sweep(tracking.default_tracking_uri(tmp_path), "s1", "s1", {"search": {"num_trials": 1}})
    return _sweep_dir(tmp_path, runs.tracking_uri, runs.experiment_id, runs.parent_run_id), runs


def test_ui_serves_the_sweep_on_localhost_and_stops_on_ctrl_c(logged_sweep, tmp_path):
    sweep_dir, runs = logged_sweep
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ui_process(sweep_dir, port, tmp_path) as ui:
        experiment = f"{base}/#/experiments/{runs.experiment_id}"
        assert ui.links == {
            "experiment": f"{experiment}/runs{VIEW}",
            "parent run": f"{experiment}/runs/{runs.parent_run_id}{VIEW}",
            "Pareto front": f"{experiment}/runs/{runs.parent_run_id}/artifacts/pareto/front.png{VIEW}",
        }
        assert requests.get(f"{base}/health", timeout=10).ok
        run = requests.get(f"{base}/ajax-api/2.0/mlflow/runs/get", params={"run_id": runs.parent_run_id},
                           timeout=10).json()["run"]
        assert run["info"]["run_name"] == "s1"  # the server reads the sweep's own store
        listening = {conn.laddr for conn in _listeners(port)}
        assert listening == {("127.0.0.1", port)}, "bound to this machine only"
    assert ui.proc.returncode == 0  # stopped by SIGINT
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=10)
    dashboard.check_port_free("127.0.0.1", port)  # the server went with it


def test_missing_sweep_dir_or_state_is_refused(tmp_path, capfd):
    assert cli.main(["ui", str(tmp_path / "nope")]) == cli.EXIT_INVALID
    assert "nope does not exist" in _said(capfd)
    (tmp_path / "empty").mkdir()
    assert cli.main(["ui", str(tmp_path / "empty")]) == cli.EXIT_INVALID
    assert "is not a sweep directory" in _said(capfd)


def test_no_store_in_the_current_directory_is_refused_without_creating_one(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui"]) == cli.EXIT_INVALID
    assert "mlflow.db does not exist" in _said(capfd)
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_is_refused(logged_sweep, capfd):
    sweep_dir, _ = logged_sweep
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["ui", str(sweep_dir), "--port", str(port)]) == cli.EXIT_INVALID
    said = _said(capfd)
    assert f"127.0.0.1:{port}" in said and "in use" in said


def test_server_tracking_uri_starts_nothing_and_prints_its_links_without_the_password(tmp_path, capfd):
    uri = "http://alice:s3cret-pw@127.0.0.1:1"  # nothing listens on port 1: the command must not contact it
    sweep_dir = _sweep_dir(tmp_path, uri, "7", "abc123")
    port = free_port()
    assert cli.main(["ui", str(sweep_dir), "--port", str(port)]) == 0
    out, err = capfd.readouterr()
    assert "s3cret-pw" not in out + err
    assert f"http://alice:***@127.0.0.1:1/#/experiments/7/runs/abc123{VIEW}" in out
    dashboard.check_port_free("127.0.0.1", port)  # no server was started there


def test_links_and_hosts():
    target = dashboard.SweepTarget("sqlite:///x.db", "3", "r9", "s")
    assert dashboard.dashboard_links("http://h:1/", target)["parent run"] == f"http://h:1/#/experiments/3/runs/r9{VIEW}"
    assert dashboard.dashboard_links("http://h:1", dashboard.SweepTarget("sqlite:///x.db")) == {
        "dashboard": f"http://h:1/#/experiments{VIEW}"}
    assert [dashboard.url_host(h) for h in ("0.0.0.0", "::", "::1", "example.org")] == [
        "127.0.0.1", "127.0.0.1", "[::1]", "example.org"]


def test_default_target_is_the_store_a_sweep_here_would_use(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert dashboard.sweep_target(None, tmp_path) == dashboard.SweepTarget(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert dashboard.sweep_target(None, tmp_path) == dashboard.SweepTarget("http://mlflow.example:5000")


def test_state_file_name_is_the_one_the_sweep_writes():
    from orchestrator import sweep

    assert dashboard.STATE_FILE == sweep.STATE_FILE


def _said(capfd) -> str:
    """The command's error output with the console's line wrapping undone."""
    return " ".join(capfd.readouterr().err.split())


def _listeners(port: int) -> list:
    return [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
