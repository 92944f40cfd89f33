"""The sweep file: fixed trial settings, a search space, objectives, search and storage settings.

Validated as a whole before anything starts; every error names the field and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config_files import ConfigError, apply_overrides, read_yaml, validate
from trainables.config import Seed, StrictModel, TrialConfig, expand_home

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")


class Objective(StrictModel):
    """One objective of the search: a metric every trial reports, and its direction."""

    metric: str
    mode: Literal["max", "min"] = "max"


class Constraint(StrictModel):
    """A bound a trial's metric must meet for the trial to count: a trial outside it is infeasible, kept in MLflow
    (tag `feasible=false`) but never on the front or in its hypervolume, and told to Optuna's constrained samplers.

    With `of`, `min` and `max` are factors of that reference model's value of the metric (`min: 0.9, of: target`:
    at least 90% of the target's model utility), resolved once the references are scored; without it they are
    absolute values.
    """

    metric: str
    min: float | None = Field(None, description="the lowest allowed value (a factor of the reference's with `of`)")
    max: float | None = Field(None, description="the highest allowed value (a factor of the reference's with `of`)")
    of: Literal["target", "oracle"] | None = Field(
        None, description="target or oracle: the bounds are factors of that model's value; absent: absolute bounds")

    @model_validator(mode="after")
    def _bounded(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError(f"constraint on {self.metric}: give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"constraint on {self.metric}: min {self.min} is above max {self.max}")
        return self


class EarlyStopping(StrictModel):
    """Multi-objective early stopping (`orchestrator.early_stopping`): at every evaluated epoch from `grace_epochs`
    on, a trial that another trial beat at the same epoch by `margin` on every objective is stopped (PRUNED)."""

    enabled: bool = False
    grace_epochs: int = Field(1, ge=1, description="epochs every trial trains before it can be stopped")
    margin: float = Field(0.0, ge=0.0, description="how much better on every objective a trial must be to stop "
                          "another (0: plain Pareto dominance)")


class SearchConfig(StrictModel):
    """How Optuna proposes trials and how many run at once."""

    sampler: Literal["tpe", "nsga2", "gp", "random", "grid"] = "tpe"
    num_trials: int = Field(8, ge=1, le=100_000, description="trials to run, <= 100000")
    max_concurrent: int = Field(2, ge=1, le=1024, description="trials running at once, <= 1024")
    seed: Seed = Field(0, description="the sampler's seed, 0 .. 2**32-1")
    order: Literal["deterministic", "async"] = Field(
        "deterministic",
        description="deterministic: ask max_concurrent points at a time and tell the study once all of them ended, "
        "so the same seed gives the same trials however the machine's load orders their ends; async: ask a new "
        "point as soon as any trial ends (no slot waits for its batch's slowest trial; proposals then depend on "
        "timing)",
    )
    early_stopping: EarlyStopping = Field(
        default_factory=lambda: EarlyStopping(),
        description="stop a trial whose objectives another trial beat at the same epoch (README, Early stopping)")
    candidates: Literal["final", "epochs"] = Field(
        "final",
        description="final: a trial's final model is its one point for the front; epochs: every evaluated epoch "
        "(base.eval.every) is a candidate point, its model kept as epoch-<e>/ (README, Epoch candidates)",
    )
    trial_value: Literal["last", "best_hv", "first_at_oracle"] = Field(
        "last",
        description="which candidate of a trial Optuna is told (search.candidates: epochs): last: the final epoch's; "
        "best_hv: the feasible one adding most hypervolume to the study's trials; first_at_oracle: the first whose "
        "selection_metric is at or below the oracle's (MUSE's checkpoint rule), else the last",
    )
    selection_metric: str | None = Field(
        None, description="trial_value: first_at_oracle: the memorisation metric (lower: more forgotten) compared "
        "with the oracle's, e.g. forget_rouge")
    keep_models: Literal["front", "all"] = Field(
        "front",
        description="search.candidates: epochs: front: a finished trial's epoch-<e>/ models off the front are "
        "deleted (final_model always stays); all: every one is kept",
    )
    max_trial_failures: int = Field(
        2, ge=0, description="Tune restarts of a trial whose process or node died (it resumes from its checkpoint)",
    )
    slots: Literal["warm", "cold"] | None = Field(
        None,
        description="how trials get their workers: warm (long-lived worker groups that run trial after trial, "
        "keeping processes, data and model weights) or cold (a Ray Train run per trial); unset: warm unless the "
        "space searches a trial's resources (train.num_workers, cpus_per_worker, gpus_per_worker)",
    )
    slot_recycle_trials: int = Field(
        50, ge=1, le=100_000, description="warm slots: replace a slot's workers after this many trials",
    )
    slot_max_growth_gb: float = Field(
        2.0, gt=0, description="warm slots: replace a slot's workers when one's resident memory has grown by more "
        "than this since the slot's first trial (engines rebuilt in one process leak)",
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        description="bounds a trial must meet to count (e.g. {metric: model_utility, min: 0.9, of: target} against "
        "collapse); infeasible trials are excluded from the front and told to TPE, NSGA-II and GP as infeasible",
    )
    warm_start: list[str] = Field(
        default_factory=list,
        description="earlier sweep folders whose finished trials seed this sweep's study (same parameters and "
        "objectives; see README, Warm start)",
    )
    trial_seeds: list[Seed] | None = Field(
        None, min_length=1,
        description="training seeds, each 0 .. 2**32-1; replaces the space's `seeds` (e.g. [0] for a quick look "
        "without a spread)",
    )

    @model_validator(mode="after")
    def _candidate_rules(self) -> SearchConfig:
        if self.trial_value != "last" and self.candidates != "epochs":
            raise ValueError(f"search.trial_value {self.trial_value} picks among a trial's epoch candidates: set "
                             "search.candidates: epochs, or trial_value: last")
        if (self.trial_value == "first_at_oracle") != (self.selection_metric is not None):
            raise ValueError("search.selection_metric is what trial_value: first_at_oracle compares with the "
                             "oracle: give both or neither")
        return self

    @field_validator("warm_start")
    @classmethod
    def _warm_start_home(cls, v: list[str]) -> list[str]:
        return [expand_home(folder) for folder in v]


class StorageConfig(StrictModel):
    """Where the sweep keeps its state."""

    dir: str = Field(".clreg/sweeps", description="sweep directories are created under it, one per sweep name")
    optuna_url: str | None = Field(None, description="Optuna RDB URL (default: SQLite file in the sweep dir)")

    @field_validator("dir")
    @classmethod
    def _dir_home(cls, v: str) -> str:
        return expand_home(v)


class MlflowConfig(StrictModel):
    """Where runs are logged."""

    tracking_uri: str | None = Field(
        None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory",
    )
    experiment: str | None = Field(None, description="default: the sweep name")


class SweepConfig(StrictModel):
    """A whole sweep."""

    name: str = Field(
        "clreg-sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
        description="one folder name (letters, digits, _ . -), at most 100 characters: it names the sweep folder "
        "and the files in it",
    )
    base: TrialConfig = Field(
        TrialConfig(), description="the trial config every trial starts from; in a file also the path of a trial "
        "config YAML (relative to the sweep file), inlined when read",
    )
    space: str | dict[str, Any] = Field("clreg-default", description="preset name or an inline space")
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="forget_quality"), Objective(metric="model_utility")],
        min_length=1,
    )
    search: SearchConfig = SearchConfig()
    storage: StorageConfig = StorageConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @property
    def objective_modes(self) -> list[tuple[str, str]]:
        """The objectives as (metric, "max"|"min") pairs, the form the searcher and the Pareto code take."""
        return [(o.metric, o.mode) for o in self.objectives]

    @model_validator(mode="after")
    def _distinct_objectives(self) -> SweepConfig:
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: each metric may appear once, got {names}")
        bounded = [c.metric for c in self.search.constraints]
        if len(set(bounded)) != len(bounded):
            raise ValueError(f"search.constraints: each metric may appear once (give min and max in one entry), "
                             f"got {bounded}")
        return self


def load_sweep_config(path: str | Path | None, overrides: list[str]) -> SweepConfig:
    """Read a sweep file (the embedded defaults when None), resolve `base: FILE`, apply overrides and validate.

    `base` may name a trial config YAML instead of holding one, so a sweep reuses the config `run` was tried with.
    The file is validated as a `TrialConfig` on its own, so its errors name it, and inlined: the resolved sweep file
    saved in the sweep directory then holds the whole base (`resume` and `report` need nothing else), and
    `--set base.x=...` applies on top. A relative path is read from the sweep file's directory; one given by
    `--set base=FILE` from the working directory.

    Raises:
        ConfigError: naming the sweep file or the base file, the field and what is allowed.
    """
    source = str(path) if path is not None else "defaults"
    data = read_yaml(path) if path is not None else {}
    if isinstance(data.get("base"), str):
        data["base"] = read_base_file(data["base"], Path(path).resolve().parent, source)
    data = apply_overrides(data, overrides)
    if isinstance(data.get("base"), str):
        data["base"] = read_base_file(data["base"], Path.cwd(), "--set base")
    return validate(SweepConfig, data, source)


def read_base_file(name: str, directory: Path, source: str) -> dict[str, Any]:
    """The mapping of trial config file `name` (relative to `directory`), refused unless it is a valid TrialConfig.

    Raises:
        ConfigError: the file is missing (naming `source`, the field and where it looked), or not a valid trial
            config (naming the file and the field).
    """
    file = Path(name).expanduser()
    file = file if file.is_absolute() else directory / file
    if not file.is_file():
        raise ConfigError(f"{source}: base: no trial config file {file} (base is an inline trial config or the path "
                          f"of a trial config YAML, relative to {directory})")
    data = read_yaml(file)
    validate(TrialConfig, data, str(file))
    return data
