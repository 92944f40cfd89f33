"""One trial's resolved configuration, built once and read by everything after training.

The trial driver writes it next to the trial's outputs before training (`trials/<id>/trial.json`), the tracker
logs the same record to the trial's MLflow run (artifact `trial.json`) and derives the run's tags from it, and
`report` and `studies/` read it back. No reader rebuilds a trial's config from MLflow's parameter strings, tags and
the sweep's base, so a setting no trial searched (the layer of a tau ablation) reads the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainables.atomic_files import write_bytes_atomic
from trainables.config import TrialConfig
from trainables.report_keys import TRIAL_RECORD_FILE


@dataclass(frozen=True)
class TrialRecord:
    """What a trial trained, resolved.

    Attributes:
        trial_id: Tune's trial id (the trial's folder under `trials/` and its MLflow run's `clreg.trial_id`).
        config: the resolved `TrialConfig` (`model_dump(mode="json", by_alias=True)`: the keys of a sweep file).
        params: the point the searcher sampled (JSON values, before MLflow turns them into strings).
        seeds: the seeds the trial trains, one after the other, each into `seed-<s>/`.
        clreg_active: whether training adds `lambda * L_CL` (`CLRegConfig.active`).
        target_layer: the 0-based decoder layer CLReg trains, None when CLReg is not active.
        method_params: every hyperparameter of the base method, defaults filled in (`resolve_method`).
    """

    trial_id: str
    config: dict[str, Any]
    params: dict[str, Any]
    seeds: list[int]
    clreg_active: bool
    target_layer: int | None
    method_params: dict[str, float]

    def value(self, path: str) -> Any:
        """The config's value at a dotted path (`clreg.tau`), None where the config has no such key."""
        node: Any = self.config
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    @property
    def method(self) -> str:
        return str(self.value("method.name"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def resolve_point(base: Mapping[str, Any], params: Mapping[str, Any], repeat_seeds: Sequence[int]) -> TrialConfig:
    """The validated config of the trial that runs `params` on the sweep's `base`: the one place a sampled point
    becomes a `TrialConfig` (the workers get this object, not a dump of it).

    Args:
        base: the sweep's base trial config (JSON values, by alias).
        params: the sampled point.
        repeat_seeds: the space's seeds per point (`SearchSpace.repeat_seeds`). With several, the trial trains
            each; with one, it is the point's `train.seed`; with none, the point's own `train.seed` is the seed.

    Raises:
        ValidationError or ValueError when the point does not make a valid trial (validation has checked every
        point of the space, so a sweep never sees one).
    """
    from search_spaces.space import SEED_PATH, apply

    point = {**params, SEED_PATH: repeat_seeds[0]} if len(repeat_seeds) == 1 else dict(params)
    return TrialConfig.model_validate(apply(dict(base), point))


def record_for(trial_id: str, cfg: TrialConfig, params: Mapping[str, Any], repeat_seeds: Sequence[int],
               num_layers: int) -> TrialRecord:
    """The record of trial `trial_id`, whose resolved config is `cfg` (`resolve_point`) and sampled point `params`;
    `num_layers` (the model's decoder layers) resolves `clreg.layer` to an index (LayerError when it does not
    fit)."""
    from trainables.model.layers import resolve_layer
    from trainables.objectives import resolve_method

    active = cfg.clreg.active
    return TrialRecord(
        trial_id=trial_id,
        config=cfg.model_dump(mode="json", by_alias=True),
        params=json.loads(json.dumps(dict(params))),
        seeds=list(repeat_seeds) or [cfg.train.seed],
        clreg_active=active,
        target_layer=resolve_layer(cfg.clreg.layer, num_layers) if active else None,
        method_params=dict(resolve_method(cfg.method).params),
    )


def build_record(trial_id: str, base: Mapping[str, Any], params: Mapping[str, Any], repeat_seeds: Sequence[int],
                 num_layers: int) -> TrialRecord:
    """The record of the trial that runs `params` on the sweep's `base` (`resolve_point`, then `record_for`): what
    the tracker logs for a trial it sees start."""
    return record_for(trial_id, resolve_point(base, params, repeat_seeds), params, repeat_seeds, num_layers)


def write_record(record: TrialRecord, trial_dir: str | Path) -> Path:
    """`trial_dir/trial.json`, written atomically (a reader never sees half a record)."""
    path = Path(trial_dir) / TRIAL_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, record.to_json().encode("utf-8"))
    return path


def read_record(trial_dir: str | Path) -> TrialRecord | None:
    """The record in `trial_dir/trial.json`, None when the file is absent (outputs moved or deleted)."""
    path = Path(trial_dir) / TRIAL_RECORD_FILE
    if not path.is_file():
        return None
    return TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))


def describe_trial(record: TrialRecord) -> dict[str, str]:
    """MLflow tags of a trial, for filtering in the dashboard: method, CLReg on/off, its layer, and the seeds of a
    trial that averages several."""
    tags = {"method": record.method, "clreg": "on" if record.clreg_active else "off",
            "layer": str(record.value("clreg.layer")) if record.clreg_active else "",
            "trust_remote_code": str(bool(record.value("model.trust_remote_code"))).lower()}
    if len(record.seeds) > 1:
        tags["seeds"] = ",".join(str(s) for s in record.seeds)
    return tags
