"""End to end in a real browser: a real 2-trial sweep (the session's `attacked_sweep`), `clreg-sweep ui` on it,
MLflow's UI in headless Chromium.

Screenshots (experiment, parent run, Pareto artifact) go to the test's tmp dir and, when `CLREG_SCREENSHOT_DIR` is
set, there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.orchestrator.dashboard_pages import CHROMEDRIVER, CHROMIUM, VIEWPORT, capture_sweep
from tests.orchestrator.live_services import free_port

pytestmark = pytest.mark.slow

APT_TIMEOUT_S = 900
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def chromium() -> None:
    """Debian's chromium and chromedriver: installed with apt-get when missing on a machine where we are root (CI's
    clean Debian machine runs the suite as root); elsewhere the test is skipped with the command to install them."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    how = "install them with: apt-get update && apt-get install -y chromium chromium-driver"
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} missing (and not root on a Debian system): {how}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed ({done.returncode}); {how}\n{done.stdout[-2000:]}"
                        f"{done.stderr[-2000:]}")
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), f"apt-get installed no {CHROMIUM} / {CHROMEDRIVER}"


def test_dashboard_shows_the_sweep_its_trials_and_pareto_front(chromium, attacked_sweep, monkeypatch, tmp_path):
    env, name = attacked_sweep.env, attacked_sweep.name  # the session's finished 2-trial sweep
    monkeypatch.chdir(env.root)
    (parent,), children = env.runs(name)
    trials = {c.info.run_id: c.data.tags["clreg.trial_id"] for c in children}
    assert len(trials) == 2

    shots = tmp_path / "screenshots"
    extra = [Path(os.environ["CLREG_SCREENSHOT_DIR"])] if os.environ.get("CLREG_SCREENSHOT_DIR") else []
    shown = capture_sweep(env.sweep_dir(name), free_port(), [shots, *extra], tmp_path)

    experiment_id = parent.info.experiment_id
    assert shown["links"]["experiment"].endswith(f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    assert shown["experiment_children"] == trials  # both child runs, under the parent named after the sweep
    assert sorted(shown["parent_children"]) == sorted(trials.values())
    assert shown["pareto_width"] > 0  # pareto/front.png was served and decoded as an image
    for paths in shown["screenshots"].values():
        for path in paths:
            data = path.read_bytes()
            assert data[:8] == PNG_MAGIC
            assert int.from_bytes(data[16:20], "big") == VIEWPORT[0]  # IHDR width
    assert sorted(p.name for p in shots.iterdir()) == [
        "dashboard-experiment.png", "dashboard-parent-run.png", "dashboard-pareto.png"]
