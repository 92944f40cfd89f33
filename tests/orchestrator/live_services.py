"""Starting and stopping real services for tests: an `mlflow server` and `clreg-sweep ui` on 127.0.0.1, and waiting on
conditions."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator import dashboard

WAIT_S = 600  # generous bound on any wait: a 2-core CI machine is slow, a hang must still end
_UI_LINK = re.compile(r"^ +(experiment|parent run|Pareto front|dashboard): +(\S+)$", re.MULTILINE)


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
    """`mlflow server` on 127.0.0.1:`port` with a SQLite backend, returned once `/health` answers: the server
    `clreg-sweep ui` starts (its own process group; artifacts logged through it land beside `db`)."""
    return dashboard.start_mlflow_server(f"sqlite:///{db}", "127.0.0.1", port, timeout=120)


@dataclass
class UiProcess:
    """A running `clreg-sweep ui`: the process, and the links it printed (name -> URL)."""

    proc: subprocess.Popen
    links: dict[str, str]


@contextlib.contextmanager
def ui_process(sweep_dir: Path, port: int, log_dir: Path) -> Iterator[UiProcess]:
    """`clreg-sweep ui SWEEP_DIR --port PORT` as a subprocess, yielded once it serves; stopped with SIGINT (Ctrl-C,
    as a user stops it) at the end, so `proc.returncode` is its exit status then. Output kept in `log_dir`."""
    out, err = log_dir / "ui.stdout", log_dir / "ui.stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", str(sweep_dir), "--port", str(port)],
                                stdout=stdout, stderr=stderr)
    try:
        wait_for(lambda: "serving until Ctrl-C" in err.read_text() or proc.poll() is not None, "clreg-sweep ui",
                 timeout=300)
        assert proc.poll() is None, f"clreg-sweep ui exited with {proc.returncode}:\n{out.read_text()}{err.read_text()}"
        yield UiProcess(proc, dict(_UI_LINK.findall(out.read_text())))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_server(server: subprocess.Popen) -> None:
    """SIGKILL the server and its web workers (its own process group)."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


# The actor classes of the processes that train: a cold trial's Ray Train workers, a warm slot's workers.
WORKER_CLASSES = ("RayTrainWorker", "SlotWorker")


def trial_checkpoints(root: Path) -> list[Path]:
    """The trials under the sweep folder `root` that have a checkpoint to resume from: a Ray Train run's registered
    one (a cold trial, `registered_checkpoints`) or a complete warm-slot checkpoint (`trials/<id>/checkpoint/`)."""
    from trainables.engine.checkpoints import STATE_FILE
    from trainables.engine.sessions import CHECKPOINT_DIR

    warm = [p.parent.parent for p in root.glob(f"trials/*/{CHECKPOINT_DIR}/{STATE_FILE}")]
    cold = [p.parent.parent for p in registered_checkpoints(root, "trials/*/ray/*")]
    return sorted(set(warm) | set(cold))


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
