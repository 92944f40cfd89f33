"""`clreg-sweep export SWEEP_DIR --front`: the Pareto front's models as plain Hugging Face folders.

A researcher takes the front's models elsewhere (another benchmark, a chat UI, a paper's tables) without the sweep's
layout: each front point's model is copied to `OUT/<trial>-seed<s>-epoch<e>/` (config.json, safetensors weights,
tokenizer: what `from_pretrained` reads), and `OUT/front.json` lists, per folder, the trial, its MLflow run, the
epoch, the seed, the objectives' values and the sampled parameters. With `search.candidates: epochs` a point is a
(trial, epoch) and its model the kept `epoch-<e>/` (or `final_model` for the last epoch); otherwise the trial's
final model, one folder per seed.

Every source folder is checked before anything is copied, and the copy is built beside `OUT` and renamed into
place, so a refused or failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from orchestrator import tracking
from orchestrator.candidates import Candidate, candidate_model
from orchestrator.sweep import load_sweep_dir
from orchestrator.sweep_state import read_state
from orchestrator.trial_record import read_record
from orchestrator.writable import write_problem

MANIFEST = "front.json"


class ExportError(ValueError):
    """The export cannot be done as asked (the message names the folder and what to do)."""


@dataclass(frozen=True)
class ExportedModel:
    """One folder of the export and where it came from."""

    folder: str
    source: Path
    row: dict[str, Any]


def export_front(sweep_dir: str | Path, out: str | Path | None = None,
                 log: Callable[[str], Any] = print) -> tuple[Path, list[ExportedModel]]:
    """Copy the models of the sweep's current Pareto front to `out` (default `SWEEP_DIR/export/front`); the folder
    written and its models.

    Raises:
        ExportError: `out` exists and is not empty or cannot be written, nothing is on the front, or a front
            model's folder is missing (e.g. deleted by hand).
        SweepError, SweepStateError, TrackingError: not a readable sweep folder or store.
    """
    root = Path(sweep_dir).resolve()
    cfg = load_sweep_dir(root)
    state = read_state(root)
    target = Path(out).resolve() if out is not None else root / "export" / "front"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"--out {target}: exists and is not an empty folder; name a new or empty one")
    problem = write_problem(target)
    if problem:
        raise ExportError(f"--out {target}: {problem}")
    tracking.check_store_readable(state.tracking_uri)
    front = tracking.sweep_front(MlflowClient(state.tracking_uri), state.experiment_id, state.parent_run_id,
                                 cfg.objective_modes, epochs=cfg.search.candidates == "epochs")
    members = front.on_front()
    if not members:
        raise ExportError(f"{root}: no finished trial is on the Pareto front yet; nothing to export")
    names = [m for m, _ in cfg.objective_modes]
    models = [model for c in members for model in _models(root / "trials", c, names)]
    missing = [str(m.source) for m in models if not (m.source / "config.json").is_file()]
    if missing:
        raise ExportError(f"front model folder(s) missing or incomplete: {', '.join(missing)}")

    building = target.with_name(target.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        for m in models:
            log(f"export: {m.folder} <- {m.source}")
            shutil.copytree(m.source, building / m.folder)
        (building / MANIFEST).write_text(json.dumps([{"folder": m.folder, **m.row} for m in models], indent=2),
                                         encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty, checked above
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target, models


def _models(trials: Path, c: Candidate, names: list[str]) -> list[ExportedModel]:
    """The saved models of one front point: one per seed the trial trained (one seed with epoch candidates)."""
    trial_id = c.run.data.tags.get(tracking.TAG_TRIAL, "")
    record = read_record(trials / trial_id)
    if record is None:
        raise ExportError(f"{trials / trial_id}: no trial record; the trial's outputs are gone")
    last = int(record.config["train"]["epochs"])
    epoch = last if c.epoch is None else c.epoch
    row = {"trial_id": trial_id, "run_id": c.run.info.run_id, "epoch": epoch,
           **{n: c.metrics[n] for n in names}, "params": record.params}
    return [ExportedModel(f"{trial_id}-seed{seed}-epoch{epoch}", candidate_model(trials / trial_id, seed, epoch, last),
                          {**row, "seed": seed}) for seed in record.seeds]
