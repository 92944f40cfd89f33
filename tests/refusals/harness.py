"""Shared harness of the refusal tables: run a CLI command in-process on bad input and prove it was refused well.

A refusal is well made when the command exits with the expected code (2 for bad input), its message names what to
fix (the fragments a case lists), no traceback reaches the user, the message stays short (a value is shortened,
never its whole repr), no Ray cluster was started and nothing was written: the working directory's tree is the
same before and after, except a generated synthetic benchmark (`.clreg/cache/data/synthetic-tofu-*`), which is an
input cache every later command shares, not a result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator import cli

# Longest message a refusal may print: a few lines naming file, field, value and allowed values.
MAX_MESSAGE_CHARS = 3000
GENERATED_DATA = (".clreg", "cache", "data")


class RayStarted(Exception):
    """Raised by the patched `ray.init`: the command got past its checks."""


def qa_rows(prefix: str, n: int) -> list[dict]:
    """`n` distinct question/answer rows."""
    return [{"question": f"{prefix} question {i}?", "answer": f"{prefix} answer number {i}."} for i in range(n)]


FORGET = qa_rows("forget", 4)
RETAIN = qa_rows("retain", 6)
HOLDOUT = qa_rows("holdout", 3)


def perturbed_rows(rows: list[dict]) -> list[dict]:
    """`rows` with the paraphrased and perturbed answers TOFU's `*_perturbed` files hold."""
    return [{**r, "paraphrased_answer": "In other words, " + r["answer"],
             "perturbed_answer": [f"wrong {k}: {r['answer']}" for k in range(3)]} for r in rows]


def write_json(path: Path, rows) -> None:
    path.write_text(json.dumps(rows), encoding="utf-8")


def tofu_dir(root: Path) -> Path:
    """A small valid TOFU-layout data directory (forget10, its perturbed file, retain90, holdout10)."""
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "forget10.json", FORGET)
    write_json(root / "forget10_perturbed.json", perturbed_rows(FORGET))
    write_json(root / "retain90.json", RETAIN)
    write_json(root / "holdout10.json", HOLDOUT)
    return root


def words(text: str) -> str:
    """Whitespace collapsed, so a message is compared independently of how rich breaks its lines."""
    return " ".join(text.split())


def tree(root: Path) -> set[str]:
    """Every path under `root` (files and folders), relative, leaving out the generated synthetic benchmark."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.relative_to(root).parts[:3] != GENERATED_DATA}


@dataclass
class Workspace:
    """A working directory with a valid trial config and sweep file in it; tests break one thing at a time.

    Attributes:
        root: The working directory (the command's cwd: default stores and caches land here).
        data: A valid TOFU-layout data directory.
        trial: A valid trial config mapping (8-layer tiny-llama on `data`).
    """

    root: Path
    data: Path
    trial: dict

    def write_trial(self, trial: dict | None = None, name: str = "trial.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(trial if trial is not None else self.trial))
        return path

    def sweep(self, **fields) -> dict:
        """A valid sweep mapping on `trial`, its stores inside `root`, with `fields` replacing top-level keys."""
        return {"name": "bad", "base": self.trial, "storage": {"dir": str(self.root / "sweeps")},
                "mlflow": {"tracking_uri": f"sqlite:///{self.root / 'mlflow.db'}"},
                "search": {"num_trials": 2, "trial_seeds": [0]}, **fields}

    def write_sweep(self, sweep: dict | None = None, name: str = "sweep.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(sweep if sweep is not None else self.sweep(), sort_keys=False))
        return path

    def refused(self, argv: list[str], capsys: pytest.CaptureFixture, fragments: list[str],
                code: int = cli.EXIT_INVALID) -> str:
        """Run `clreg-sweep argv` and assert a well-made refusal (see the module docstring); return its stderr."""
        capsys.readouterr()
        before = tree(self.root)
        assert cli.main(argv) == code
        captured = capsys.readouterr()
        err = words(captured.err)
        assert "Traceback" not in captured.err + captured.out, captured.err
        assert len(err) <= MAX_MESSAGE_CHARS, f"message of {len(err)} characters: {err[:500]}..."
        for fragment in fragments:
            assert words(fragment) in err, f"{fragment!r} not in stderr: {err}"
        assert not ray.is_initialized(), "a Ray cluster was started"
        assert tree(self.root) == before, f"written: {sorted(tree(self.root) ^ before)}"
        return err


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A `Workspace` in `tmp_path` as the cwd, with `ray.init` patched to raise and no ambient cluster or store."""
    data = tofu_dir(tmp_path / "data")
    trial = {"data": {"benchmark": "tofu", "path": str(data)}, "model": {"tiny": {"num_layers": 8}},
             "prepare": {"cache_dir": str(tmp_path / ".clreg" / "cache")}, "output_dir": str(tmp_path / "runs")}

    def no_ray(*args, **kwargs):
        raise RayStarted("ray.init was called")

    monkeypatch.setattr(ray, "init", no_ray)
    for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    # rich folds lines at the console width (80 when not a terminal), even inside long tmp paths: widen it.
    monkeypatch.setattr(cli.console, "width", 10_000)
    return Workspace(tmp_path, data, trial)
