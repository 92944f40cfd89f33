"""Starting and stopping real services for tests: an `mlflow server` on 127.0.0.1, and waiting on conditions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

WAIT_S = 600  # generous bound on any wait: a 2-core CI machine is slow, a hang must still end


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """Poll `condition()` until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(db: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` with a SQLite backend, returned once `/health` answers."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
        except requests.RequestException:
            return False

    wait_for(healthy, "mlflow server", timeout=120)
    return proc


def stop_server(server: subprocess.Popen) -> None:
    """SIGKILL the server and its web workers (its own process group)."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def registered_checkpoints(root: Path, pattern: str) -> list[Path]:
    """Ray Train run directories under `root` (glob `pattern`) whose checkpoint manager has registered a checkpoint.

    A persisted `checkpoint_*` directory is not enough: Ray Train registers it only when its controller next polls
    the workers, and a worker killed before that restarts from the previous registered checkpoint (or none).
    """
    runs = []
    for snapshot in root.glob(f"{pattern}/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                runs.append(snapshot.parent)
        except (OSError, ValueError):  # being written
            continue
    return runs
