"""`search.warm_start`: an earlier sweep's finished trials as the new study's first observations.

Researchers run the same space again on another split or model size; starting each time from random search
throws away what the last sweep learned about where the good trade-offs lie. A warm start adds the COMPLETE trials
of earlier sweeps to the new Optuna study before anything is sampled, so TPE, NSGA-II and GP model them from the
first trial. They stay observations only: they are not trials of this sweep (no Tune trial, no MLflow run, not on
its front), their budget is not this sweep's, and each carries its origin (`clreg.origin`: the earlier sweep's
folder and trial number) in the study.

A source is compatible when it searched the same parameters (names and kinds) for the same objectives (metrics
and directions, in order); anything else is refused before the sweep starts, naming the difference. Each earlier
trial is replayed through the new space (`SearchSpace.sample` on Optuna's `FixedTrial`), so it carries the new
sweep's distributions; a trial whose values the new space does not hold (a narrower range, a layer the new model
lacks) is left out and counted. Only a source's own trials are taken, not those it was warm-started with, so
chaining sweeps never adds a trial twice. Under `search.constraints` an added trial gets its violations from the
final metrics the earlier sweep stored with it (`ATTR_METRICS`); a metric it did not store counts as unmeasured.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from orchestrator.constraints import Bound, violations
from orchestrator.sweep_config import SweepConfig
from search_spaces.space import SearchSpace

ATTR_ORIGIN = "clreg.origin"  # "<earlier sweep folder>#<its trial number>"
ATTR_METRICS = "clreg.metrics"  # a told trial's final metrics (finite numbers), what a later warm start reads


class WarmStartError(ValueError):
    """A `search.warm_start` entry cannot seed this sweep (the message names it and the difference)."""


@dataclass(frozen=True)
class WarmStart:
    """The observations taken from the earlier sweeps.

    Attributes:
        trials: COMPLETE trials in the new space's distributions, ready for `study.add_trials`.
        left_out: per source folder, how many of its finished trials the new space does not hold.
    """

    trials: list[optuna.trial.FrozenTrial]
    left_out: dict[str, int]

    def describe(self) -> str:
        skipped = sum(self.left_out.values())
        note = f" ({skipped} left out: values outside this sweep's space)" if skipped else ""
        return f"{len(self.trials)} finished trials from {', '.join(self.left_out)}{note}"


def check_sources(cfg: SweepConfig, space: SearchSpace) -> list[SweepConfig]:
    """Every `search.warm_start` folder, checked before anything starts: a sweep directory with a readable study,
    the same searched parameters (name and kind) and the same objectives as `cfg`.

    Raises:
        WarmStartError naming the entry and what differs (the parameter, the objectives) or why it cannot be read.
    """
    from orchestrator.search import sweep_study_name
    from orchestrator.sweep import check_study, load_sweep_dir, resolve_space, sweep_paths

    sources = []
    for i, folder in enumerate(cfg.search.warm_start):
        field = f"search.warm_start[{i}] {folder}"
        try:
            earlier = load_sweep_dir(folder)
            check_study(sweep_paths(earlier).optuna_url(earlier), sweep_study_name(earlier.name))
        except ValueError as e:  # SweepError, ConfigError: the message names the folder or the study
            raise WarmStartError(f"search.warm_start[{i}]: {e}") from None
        if Path(folder).resolve() == Path(cfg.storage.dir).resolve() / cfg.name:
            raise WarmStartError(f"{field}: is this sweep's own folder (`resume` continues a sweep)")
        theirs = resolve_space(earlier).params
        for name in sorted(set(theirs) | set(space.params)):
            if name not in space.params or name not in theirs:
                where = "that sweep" if name in theirs else "this sweep"
                raise WarmStartError(f"{field}: parameter {name} is searched only by {where}; allowed: a sweep of the "
                                     f"same parameters ({', '.join(space.params)})")
            if type(theirs[name]) is not type(space.params[name]):
                raise WarmStartError(f"{field}: parameter {name} is a {_kind(theirs[name])} there and a "
                                     f"{_kind(space.params[name])} here")
        if earlier.objective_modes != cfg.objective_modes:
            raise WarmStartError(f"{field}: its objectives {_objectives(earlier)} differ from this sweep's "
                                 f"{_objectives(cfg)}")
        sources.append(earlier)
    return sources


def warm_trials(sources: Sequence[SweepConfig], space: SearchSpace, num_layers: int,
                bounds: Sequence[Bound]) -> WarmStart:
    """The COMPLETE trials of `sources` (checked by `check_sources`), replayed through `space` for a model of
    `num_layers` decoder layers, each with its values, its origin and, under `bounds`, its violations."""
    from orchestrator.search import sweep_study_name
    from orchestrator.sweep import sweep_paths

    trials, left_out = [], {}
    for earlier in sources:
        paths = sweep_paths(earlier)
        folder = paths.root
        study = optuna.load_study(study_name=sweep_study_name(earlier.name), storage=paths.optuna_url(earlier))
        own = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
               if ATTR_ORIGIN not in t.user_attrs]
        taken = [t for t in (_replayed(t, space, num_layers, folder, bounds) for t in own) if t is not None]
        trials += taken
        left_out[str(folder)] = len(own) - len(taken)
    return WarmStart(trials, left_out)


def _replayed(trial: optuna.trial.FrozenTrial, space: SearchSpace, num_layers: int, folder: Path,
              bounds: Sequence[Bound]) -> optuna.trial.FrozenTrial | None:
    """`trial` in this space's distributions, or None when the space does not hold one of its values."""
    fixed = optuna.trial.FixedTrial(trial.params)
    try:
        with warnings.catch_warnings():
            # FixedTrial only warns about a value outside a range; an unknown choice or a missing value raises.
            warnings.filterwarnings("error", message=".* is out of the range of the distribution")
            space.sample(fixed, num_layers)
    except (ValueError, UserWarning):
        return None
    metrics = trial.user_attrs.get(ATTR_METRICS, {})
    return optuna.trial.create_trial(
        values=trial.values, params=fixed.params, distributions=fixed.distributions,
        user_attrs={ATTR_ORIGIN: f"{folder}#{trial.number}", ATTR_METRICS: metrics},
        constraints={b.metric: v for b, v in zip(bounds, violations(metrics, bounds))},
    )


def _kind(param: object) -> str:
    return type(param).__name__.removesuffix("Param").lower()


def _objectives(cfg: SweepConfig) -> str:
    return ", ".join(f"{m} ({mode})" for m, mode in cfg.objective_modes)
