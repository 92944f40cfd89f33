"""What produced a run beyond its config: library versions, the code, the data, the metric definitions.

A sweep's numbers are only comparable with another's when the same code and libraries scored the same data with
the same formulas, and a trial's config alone does not say that. The driver collects this record once per sweep
(`collect`) and the tracker logs it as params of the parent run and of every trial's child run (`params`), with
the parts that depend on the trial's own config (world size, effective batch size, metric definitions) taken
from that config, since a space may search them.

Params are immutable in MLflow: a resumed sweep keeps the first value of each key and warns when the new one
differs (e.g. a library upgraded between the two drivers).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.config import TrialConfig

PACKAGES = ("torch", "transformers", "deepspeed", "ray", "optuna", "mlflow", "peft")
PROJECT = "clreg-sweep"
PREFIX = "record."
# The source checkout this module runs from: the repository root, one level above `orchestrator/`.
SOURCE_DIR = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class RunRecord:
    """The sweep-wide part of the record: the same for every trial of a sweep.

    Attributes:
        versions: package -> installed version ("not installed" when absent).
        project_version: the installed `clreg-sweep` distribution's version, None when it is not installed.
        git_commit: `git rev-parse HEAD` of the source checkout, suffixed "-dirty" when it has uncommitted
            changes; None outside a checkout.
        benchmark_fingerprint: `trainables.data.loading.benchmark_fingerprint` of the sweep's benchmark.
        definitions_versions: `eval.definitions` value -> the version of those formulas.
    """

    versions: dict[str, str]
    project_version: str | None
    git_commit: str | None
    benchmark_fingerprint: str
    definitions_versions: dict[str, str]

    def params(self, cfg: TrialConfig) -> dict[str, str]:
        """The record of a run of `cfg` as MLflow params (keys `record.*`); unknown parts are left out."""
        train = cfg.train
        out = {f"{PREFIX}versions.{name}": version for name, version in self.versions.items()}
        out |= {
            f"{PREFIX}world_size": str(train.num_workers),
            f"{PREFIX}effective_batch_size": str(train.micro_batch_size * train.grad_accum * train.num_workers),
            f"{PREFIX}benchmark_fingerprint": self.benchmark_fingerprint,
            f"{PREFIX}eval_definitions": cfg.eval.definitions,
            f"{PREFIX}eval_definitions_version": self.definitions_versions[cfg.eval.definitions],
        }
        if self.project_version is not None:
            out[f"{PREFIX}clreg_sweep_version"] = self.project_version
        if self.git_commit is not None:
            out[f"{PREFIX}git_commit"] = self.git_commit
        return out


def collect(benchmark_fingerprint: str, source_dir: Path = SOURCE_DIR) -> RunRecord:
    """The record of this process: installed versions, the checkout at `source_dir`, the given fingerprint."""
    from trainables.metrics.definitions import DEFINITIONS_VERSION

    return RunRecord({name: _version(name) or "not installed" for name in PACKAGES}, _version(PROJECT),
                     git_commit(source_dir), benchmark_fingerprint, dict(DEFINITIONS_VERSION))


def git_commit(source_dir: Path) -> str | None:
    """HEAD of the git checkout whose root is `source_dir`, "-dirty" appended when files differ from it.

    None when `source_dir` is not the root of a checkout (an installed package inside some other repository
    is not that repository's code), when git is missing, or when git fails (e.g. an untrusted directory).
    """
    top = _git(source_dir, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(source_dir).resolve():
        return None
    head = _git(source_dir, "rev-parse", "HEAD")
    status = _git(source_dir, "status", "--porcelain")
    if head is None or status is None:
        return None
    return f"{head}-dirty" if status else head


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
