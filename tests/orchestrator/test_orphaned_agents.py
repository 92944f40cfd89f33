"""Ending the Ray agents a SIGKILLed local cluster leaves behind, on real processes (the real case, a killed sweep
driver, is `test_faults.py::test_killed_driver_resumes_without_duplicates_or_zombies`)."""

from __future__ import annotations

import subprocess
import sys

import psutil

from orchestrator.cluster import end_orphaned_ray_agents, orphaned_ray_agents

_SLEEP = "import time; time.sleep(120)"


def test_an_agent_without_its_raylet_is_ended_and_nothing_else():
    agent = subprocess.Popen([sys.executable, "-c", _SLEEP, "ray::DashboardAgent"])  # its parent is no raylet
    bystander = subprocess.Popen([sys.executable, "-c", _SLEEP, "not-a-ray-agent"])
    try:
        assert agent.pid in {p.pid for p in orphaned_ray_agents()}
        assert bystander.pid not in {p.pid for p in orphaned_ray_agents()}
        assert agent.pid in end_orphaned_ray_agents()
        agent.wait(timeout=10)  # already reaped by the kill's wait: only its end is checked
        assert not psutil.pid_exists(agent.pid)
        assert bystander.poll() is None
    finally:
        for proc in (agent, bystander):
            proc.kill()
            proc.wait()
