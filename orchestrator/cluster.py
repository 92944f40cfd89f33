"""Starting or joining the Ray cluster a command runs on."""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None):
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a local one for this command and stop it after.

    A local cluster binds its dashboard to 127.0.0.1 (Ray Train V2's placement-group cleaner needs the state API
    the dashboard serves); usage stats are never sent.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()
