"""Starting or joining the Ray cluster a command runs on."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

from orchestrator.console_log import VERBOSE_ENV, is_verbose, ray_logging_level

# Seconds between a Ray Train controller's polls of its workers on a local cluster (see `ray_cluster`).
LOCAL_HEALTH_CHECK_INTERVAL_S = "0.25"
# The titles of the per-node agent processes a raylet starts (and which outlive a SIGKILLed local cluster).
RAY_AGENT_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def orphaned_ray_agents() -> list:
    """This user's Ray agent processes whose raylet is gone: an agent's parent is the raylet that started it, so one
    whose parent is anything else (init, after the raylet died) serves no cluster."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["uids"].real != os.getuid() or not any(t in cmdline for t in RAY_AGENT_TITLES):
                continue
            parent = proc.parent()
            if parent is None or "raylet" not in " ".join(parent.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def end_orphaned_ray_agents() -> list[int]:
    """SIGKILL the orphaned Ray agents (`orphaned_ray_agents`) and return their PIDs.

    Why: when a local cluster's driver is SIGKILLed (an OOM kill, `kill -9` of a sweep), Ray 2.60 leaves that
    node's dashboard and runtime-env agents running. They keep the agent ports, and the next local cluster on the
    machine never gets a job agent. A local cluster's start ends them first.
    """
    import psutil

    killed = []
    for proc in orphaned_ray_agents():
        try:
            proc.kill()
            killed.append(proc)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(killed, timeout=10)
    return [proc.pid for proc in killed]


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None):
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a local one for this command and stop it after.

    A local cluster binds its dashboard to 127.0.0.1 (Ray Train V2's placement-group cleaner needs the state API
    the dashboard serves) and keeps Ray's token authentication, which a new local cluster turns on by default
    (token in ~/.ray/auth_token or RAY_AUTH_TOKEN); RAY_AUTH_MODE=disabled gets a warning. Usage stats are never
    sent. (Setting RAY_AUTH_MODE here would not do: Ray caches the mode when first imported.)

    Workers' output reaches the console (their warnings and errors, our own lines); Ray's driver-side info logs and
    the workers' internal lines do only with `--verbose` (see `orchestrator.console_log`).

    A local cluster's Ray Train controllers poll their workers every `LOCAL_HEALTH_CHECK_INTERVAL_S` instead of
    Ray's 2 s, which a finished run otherwise waits out: about 3 s less per trial (benchmarks/trial_overhead.py).
    The processes of a local cluster inherit this environment; a joined cluster keeps its own settings. Before a
    local cluster starts, the agents a killed one left behind are ended (`end_orphaned_ray_agents`).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        warnings.warn(f"RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}: the Ray cluster runs WITHOUT token "
                      f"authentication; anyone who reaches its ports can run code on it", stacklevel=2)
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield
        return
    level = ray_logging_level()
    if address:
        # A joined cluster's processes do not inherit this environment: `--verbose` reaches its workers this way.
        verbose_env = {"env_vars": {VERBOSE_ENV: "1"}} if is_verbose() else None
        ray.init(address=address, log_to_driver=True, logging_level=level, runtime_env=verbose_env)
    else:
        ended = end_orphaned_ray_agents()
        if ended:
            print(f"warning: ended {len(ended)} Ray agent process(es) that a killed local cluster left running "
                  f"(PIDs {', '.join(map(str, ended))}): they held the ports a new cluster's agents need",
                  file=sys.stderr, flush=True)
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", LOCAL_HEALTH_CHECK_INTERVAL_S)
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
                 logging_level=level)
    try:
        yield
    finally:
        ray.shutdown()


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def this_machine() -> list[dict[str, float]]:
    """The one node a local cluster started on this machine would have (what `validate` checks against)."""
    import torch

    return [{"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}]


def check_resources_before_start(train, address: str | None) -> None:
    """Without a cluster address the command starts a local cluster of this machine: check it before starting."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        check_trial_fits(train, this_machine(), "this machine")


def warn_if_trial_does_not_fit(train, log) -> None:
    """On a joined cluster the live nodes are not the limit (an autoscaler may add GPU nodes on demand), so a trial
    that does not fit them yet is a warning, not an error."""
    try:
        check_trial_fits(train, cluster_nodes(), "the Ray cluster's live nodes")
    except ValueError as e:
        log(f"warning: {e}. Its trials wait until an autoscaler adds such nodes; without one they wait forever.")


def check_trial_fits(train, nodes: list[dict[str, float]], where: str) -> None:
    """Refuse a trial whose workers cannot all run at once on `nodes` (Ray would wait for them forever).

    Each worker needs `train.cpus_per_worker` CPUs and `train.gpus_per_worker` GPUs on one node, and all
    `train.num_workers` workers must be placed together.

    Raises:
        ValueError naming the fields, what one trial needs and what the cluster (`where`) has.
    """
    need = {"CPU": float(train.cpus_per_worker), "GPU": float(train.gpus_per_worker)}
    fits = sum(min(int(node.get(r, 0.0) // amount) for r, amount in need.items() if amount > 0) for node in nodes)
    if fits >= train.num_workers:
        return
    have = ", ".join(f"{sum(n.get(r, 0.0) for n in nodes):g} {r}s in all, at most "
                     f"{max((n.get(r, 0.0) for n in nodes), default=0.0):g} on one node" for r in need)
    raise ValueError(
        f"train.num_workers={train.num_workers} x (train.cpus_per_worker={need['CPU']:g}, "
        f"train.gpus_per_worker={need['GPU']:g}) does not fit on {where} ({have}; {len(nodes)} node(s)); "
        f"lower them or use a bigger cluster (--address)"
    )
