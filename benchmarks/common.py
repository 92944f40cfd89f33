"""What every benchmark records beside its figures: the machine, the date and the versions that produced them."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "deepspeed", "ray", "transformers", "optuna", "mlflow")


def machine() -> dict:
    """CPU model and count, GPU (if any), memory, OS, date, git commit and package versions."""
    import torch

    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem, 1), "os": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "commit": commit,
        "versions": {p: metadata.version(p) for p in PACKAGES},
    }


def write_result(path: str | Path, data: dict) -> None:
    """Write one benchmark's figures as JSON (one file per benchmark under benchmarks/results/)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"written to {path}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a one-process torch.distributed group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
