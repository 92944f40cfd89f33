"""The sweep file: fixed trial settings, a search space, objectives, search and storage settings.

Validated as a whole before anything starts; every error names the field and the allowed values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from trainables.config import StrictModel, TrialConfig

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")


class Objective(StrictModel):
    """One objective of the search: a metric every trial reports, and its direction."""

    metric: str
    mode: Literal["max", "min"] = "max"


class SearchConfig(StrictModel):
    """How Optuna proposes trials and how many run at once."""

    sampler: Literal["tpe", "nsga2", "gp", "random", "grid"] = "tpe"
    num_trials: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
    asha: bool = Field(False, description="stop weak trials early (ASHA on the first objective's epochs)")
    max_trial_failures: int = Field(
        2, ge=0, description="Tune restarts of a trial whose process or node died (it resumes from its checkpoint)",
    )
    trial_seeds: list[int] | None = Field(
        None, min_length=1,
        description="training seeds; replaces the space's `seeds` (e.g. [0] for a quick look without a spread)",
    )


class StorageConfig(StrictModel):
    """Where the sweep keeps its state."""

    dir: str = Field(".clreg/sweeps", description="sweep directories are created under it, one per sweep name")
    optuna_url: str | None = Field(None, description="Optuna RDB URL (default: SQLite file in the sweep dir)")


class MlflowConfig(StrictModel):
    """Where runs are logged."""

    tracking_uri: str | None = Field(
        None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory",
    )
    experiment: str | None = Field(None, description="default: the sweep name")


class SweepConfig(StrictModel):
    """A whole sweep."""

    name: str = Field("clreg-sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    base: TrialConfig = TrialConfig()
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
        return self
