"""What every benchmark records beside its figures: the machine, the date and the versions that produced them."""

from __future__ import annotations

import json
import os
import platform
import resource
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


def rss_mib() -> float:
    """This process's resident set size now, in MiB (Linux `/proc/self/statm`; the peak where that is missing).

    A benchmark reads it at set-up milestones, so a training step's increment can be told from the interpreter,
    library and model baseline that `peak_rss_mib` includes.
    """
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (`getrusage(RUSAGE_SELF).ru_maxrss`, KiB on Linux).

    A process started by fork+exec (subprocess, multiprocessing "spawn") starts with its parent's peak on Linux (the
    exec records the old, shared address space's high-water mark), so measure in processes whose parent is small.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
