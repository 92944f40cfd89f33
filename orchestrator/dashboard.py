"""`clreg-sweep ui`: the MLflow dashboard on a sweep's results, one command and the URLs to open.

A sweep logs to an embedded store (SQLite file, artifacts as `file://` URIs beside it) or to an MLflow server. The
embedded store has no web UI of its own, so `ui` starts `mlflow server` on it and prints the links into the
sweep's experiment and parent run (where the Pareto front is); a sweep that logged to a server already has a
dashboard, and `ui` only prints its links.

`mlflow server` serves the artifacts of runs whose artifact URI is a local `file://` path as they are (the
`get-artifact` and `artifacts/list` handlers read them from the run's own URI), so the sweep's `pareto/` files show
in the artifacts tab without copying. `--artifacts-destination` is set beside the database so that anything
logged *through* the server (new experiments) lands next to the sweep's artifacts, not in the directory the
server happened to be started from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from orchestrator.sweep_state import STATE_FILE as STATE_FILE  # the file a sweep folder must hold, for callers
from orchestrator.sweep_state import read_state
from orchestrator.tracking import default_tracking_uri, local_store_path, redact

START_TIMEOUT_S = 180.0  # `mlflow server` answers in 7-20 s on a 2-core machine; a loaded one is slower
STOP_TIMEOUT_S = 20.0
LOG_TAIL_CHARS = 2000
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class DashboardError(ValueError):
    """The dashboard cannot be opened as asked (missing sweep or store, port in use, server failed to start)."""


@dataclass(frozen=True)
class SweepTarget:
    """What to show: a tracking store and, for a sweep, its experiment and parent run."""

    tracking_uri: str
    experiment_id: str | None = None
    parent_run_id: str | None = None
    name: str | None = None


def sweep_target(sweep_dir: str | Path | None, cwd: Path) -> SweepTarget:
    """The store, experiment and parent run of the sweep in `sweep_dir`; without one, the store a sweep started
    in `cwd` would use ($MLFLOW_TRACKING_URI, else the SQLite store of `cwd`).

    Raises:
        DashboardError: the sweep directory is missing or not a directory.
        SweepStateError: its `sweep_state.json` is missing or damaged (a sweep writes it once it has opened its
            MLflow runs).
    """
    if sweep_dir is None:
        return SweepTarget(os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(cwd))
    root = Path(sweep_dir).resolve()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DashboardError(f"sweep directory {root} {what} (give the directory `clreg-sweep sweep` printed: "
                             "storage.dir/<sweep name>)")
    state = read_state(root)
    return SweepTarget(state.tracking_uri, state.experiment_id, state.parent_run_id, root.name)


def is_server_uri(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def dashboard_links(base_url: str, target: SweepTarget) -> dict[str, str]:
    """Named links into MLflow 3's UI (a hash router: `#/experiments/<id>/runs/<run>/artifacts/<path>`).

    `workflowType=machine_learning` opens the "Model training" view (the runs table); without it MLflow 3 opens
    an experiment on its GenAI traces overview, which is empty for a sweep.
    """
    base = base_url.rstrip("/")
    view = "?workflowType=machine_learning"
    if target.experiment_id is None:
        return {"dashboard": f"{base}/#/experiments{view}"}
    experiment = f"{base}/#/experiments/{target.experiment_id}"
    links = {"experiment": f"{experiment}/runs{view}"}
    if target.parent_run_id:
        run = f"{experiment}/runs/{target.parent_run_id}"
        links.update({"parent run": f"{run}{view}", "Pareto front": f"{run}/artifacts/pareto/front.png{view}"})
    return links


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything when `host:port` cannot be bound (the server would die seconds later).

    SO_REUSEADDR as uvicorn sets it: a port held only by closed connections (TIME_WAIT) counts as free.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise DashboardError(f"cannot listen on {host}:{port} ({error.strerror or error}): the port is in use or "
                             "the address is not this machine's; choose another with --port/--host") from None


def start_mlflow_server(backend_store_uri: str, host: str, port: int, log_file: Path | None = None,
                        timeout: float = START_TIMEOUT_S) -> subprocess.Popen:
    """`mlflow server` on `backend_store_uri`, returned once `/health` answers.

    One web worker (MLflow's default is 4) and no job runner (it runs GenAI evaluation jobs, and costs two more
    Python processes): a dashboard for one person, cheap on a small machine. The server gets its own process
    group, so a Ctrl-C in the terminal reaches only the caller, which stops it with `stop_mlflow_server`.

    Args:
        log_file: where the server's output goes (discarded when None); its end is quoted if the server fails.

    Raises:
        DashboardError: the server exited or did not answer within `timeout` seconds (it is stopped then).
    """
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    artifacts = _artifacts_destination(backend_store_uri)
    if artifacts:
        command += ["--artifacts-destination", artifacts]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with open(log_file or os.devnull, "ab") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_until_healthy(server, f"http://{url_host(host)}:{port}/health", timeout, log_file)
    except BaseException:  # not answering, or Ctrl-C while waiting: never leave the server behind
        stop_mlflow_server(server)
        raise
    return server


def _wait_until_healthy(server: subprocess.Popen, url: str, timeout: float, log_file: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DashboardError(f"mlflow server exited with code {server.returncode} before answering "
                                 f"{url}{_log_tail(log_file)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.5)
    raise DashboardError(f"mlflow server did not answer {url} within {timeout:.0f} s{_log_tail(log_file)}")


def stop_mlflow_server(server: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (MLflow forwards it to uvicorn, which shuts down cleanly), then SIGKILL to whatever of its process
    group is left after `timeout` seconds."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # the uvicorn worker, should it outlive its parent
    server.wait()


def url_host(host: str) -> str:
    """The host to put in a URL for a server bound to `host` (a wildcard address is reached on 127.0.0.1)."""
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve(sweep_dir: str | Path | None, host: str, port: int, out: Callable[[str], None] = print,
          log: Callable[[str], None] = print) -> int:
    """The whole `ui` command: print the links (on `out`) and, for an embedded store, serve until Ctrl-C.

    Returns 0 after Ctrl-C (or SIGTERM) stopped the server, 1 when the server died on its own.

    Raises:
        DashboardError: nothing to show (see `sweep_target`), a store file that does not exist, a port in use, a
            server that did not start.
    """
    target = sweep_target(sweep_dir, Path.cwd())
    what = f"sweep {target.name}" if target.name else "MLflow store"
    if is_server_uri(target.tracking_uri):
        log(f"{what} logged to the MLflow server {redact(target.tracking_uri)}; open it there:")
        _print_links(dashboard_links(redact(target.tracking_uri), target), out)
        return 0
    _check_store_exists(target.tracking_uri)
    check_port_free(host, port)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="clreg-ui-") as tmp:
            log(f"starting mlflow server on {redact(target.tracking_uri)} ...")
            return _serve_until_interrupted(target, host, port, Path(tmp) / "server.log", what, out, log)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_until_interrupted(target: SweepTarget, host: str, port: int, log_file: Path, what: str,
                             out: Callable[[str], None], log: Callable[[str], None]) -> int:
    try:
        server = start_mlflow_server(target.tracking_uri, host, port, log_file=log_file)
    except KeyboardInterrupt:
        return 0
    try:
        out(f"MLflow dashboard of {what}:")
        _print_links(dashboard_links(f"http://{url_host(host)}:{port}", target), out)
        log("serving until Ctrl-C")
        code = server.wait()
        log(f"mlflow server exited with code {code}{_log_tail(log_file)}")
        return 1
    except KeyboardInterrupt:
        log("stopping the mlflow server")
        return 0
    finally:
        stop_mlflow_server(server)


def _interrupt(signum, frame) -> None:
    """SIGTERM ends `ui` like Ctrl-C does, so the server (in its own process group) is stopped, not orphaned."""
    raise KeyboardInterrupt


def _print_links(links: dict[str, str], out: Callable[[str], None]) -> None:
    width = max(map(len, links))
    for name, url in links.items():
        out(f"  {name + ':':<{width + 1}} {url}")


def _check_store_exists(tracking_uri: str) -> None:
    """`mlflow server` would create an empty store where the sweep's is missing: refuse instead."""
    path = local_store_path(tracking_uri)
    if path is not None and not path.exists():
        raise DashboardError(f"MLflow store {path} does not exist (a sweep run in this directory creates it; "
                             "otherwise give the sweep's directory: clreg-sweep ui SWEEP_DIR)")


def _artifacts_destination(backend_store_uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite file (where `orchestrator.tracking` puts a sweep's artifacts)."""
    path = local_store_path(backend_store_uri)
    if path is None or not backend_store_uri.startswith("sqlite:"):
        return None
    return (path.resolve().parent / "mlartifacts").as_uri()


def _log_tail(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    text = redact(log_file.read_text(errors="replace").strip())
    return f"; its output ends with:\n{text[-LOG_TAIL_CHARS:]}" if text else ""
