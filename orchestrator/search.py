"""Optuna behind Ray Tune: samplers, the persisted study, and honest trial states.

Ray's `OptunaSearch` tells Optuna COMPLETE for any trial that ends without an error, and on a multi-objective
trial that failed or lacked an objective it tells a list of Nones, which Optuna refuses, leaving a RUNNING zombie
in the study. `SweepOptunaSearch` fixes the one method involved: a trial is COMPLETE only when it ran to its end
and reported every objective, FAIL when it errored or its loss diverged, PRUNED when it was stopped early (ASHA).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from orchestrator.sweep_config import SearchConfig
from search_spaces.space import SearchSpace
from trainables.report_keys import DIVERGED, TRIAL_COMPLETE

# Optuna user attributes: the Tune trial an Optuna trial was asked for, and why a lost trial was failed.
ATTR_TUNE_TRIAL = "tune_trial_id"
ATTR_LOST = "clreg.lost"


def sweep_study_name(sweep_name: str) -> str:
    """The Optuna study of a sweep, unique to its name within a shared Optuna storage."""
    return f"clreg-sweep:{sweep_name}"


class SweepOptunaSearch(OptunaSearch):
    """`OptunaSearch` whose completed trials carry the right Optuna state (see the module docstring)."""

    def suggest(self, trial_id: str) -> dict | None:
        asked = trial_id not in self._ot_trials
        params = super().suggest(trial_id)
        if asked and trial_id in self._ot_trials:
            # Names the Tune trial in the study, so a resume can tell which RUNNING trials Tune no longer knows.
            self._ot_trials[trial_id].set_user_attr(ATTR_TUNE_TRIAL, trial_id)
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        # A driver killed after telling the study but before Tune saved its state restores a searcher that does not
        # know the trial ended; the study (persisted) does, and keeps the first outcome.
        if not self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            state, values = trial_outcome(result, self.metric, error)
            self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)


def trial_outcome(result: dict | None, metrics: list[str], error: bool
                  ) -> tuple[optuna.trial.TrialState, list[float] | None]:
    """The Optuna state and objective values of a finished Tune trial."""
    if error or (result or {}).get(DIVERGED):
        return optuna.trial.TrialState.FAIL, None
    if not result or not result.get(TRIAL_COMPLETE):
        return optuna.trial.TrialState.PRUNED, None
    values = [result.get(m) for m in metrics]
    if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return optuna.trial.TrialState.FAIL, None
    return optuna.trial.TrialState.COMPLETE, [float(v) for v in values]


def fail_lost_trials(storage_url: str, study: str, known_trial_ids: set[str], reason: str) -> list[int]:
    """Tell FAIL, with `reason` as the `clreg.lost` user attribute, for the study's RUNNING trials whose Tune trial
    the resumed experiment does not know (asked after Tune's last state save); returns their numbers.

    Optuna cannot delete a trial, so a lost one stays in the study as FAIL: samplers ignore it, and the COMPLETE
    trials are exactly the ones Tune ran to the end.
    """
    loaded = optuna.load_study(study_name=study, storage=optuna.storages.RDBStorage(storage_url))
    lost = [t for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get(ATTR_TUNE_TRIAL) not in known_trial_ids]
    for t in lost:
        loaded._storage.set_trial_user_attr(t._trial_id, ATTR_LOST, reason)
        loaded.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return [t.number for t in lost]


def startup_trials(num_trials: int) -> int:
    """Random trials before TPE or GP model the results: a quarter of the budget, between 3 and Optuna's default 10.

    With Optuna's fixed 10, a laptop sweep of 8 trials never leaves random search, and a sweep of 16 models only
    its last 6 (benchmarks/search_efficiency.py measured every sampler tied with random until trial 9-11).
    """
    return max(3, min(10, num_trials // 4))


def make_sampler(search: SearchConfig, num_trials: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by `search.sampler`, seeded.

    TPE is multivariate (Optuna 5's multi-objective TPE is not, by default); TPE and GP start modelling after
    `startup_trials(num_trials)` random trials; NSGA-II gets a population of a quarter of the budget (at least 4)
    because its default of 50 leaves it random search for a whole laptop sweep; `grid` enumerates the space's grid
    combinations, which the searcher enqueues, so its sampler only sees enqueued trials.
    """
    seed = search.seed
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=startup_trials(num_trials))
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, num_trials // 4))
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(num_trials))
    return optuna.samplers.RandomSampler(seed=seed)


def _define_by_run(trial: optuna.Trial, space: SearchSpace, num_layers: int) -> dict[str, Any]:
    return space.sample(trial, num_layers)


def make_searcher(space: SearchSpace, num_layers: int, objectives: list[tuple[str, str]], search: SearchConfig,
                  num_trials: int, study_name: str, storage_url: str) -> SweepOptunaSearch:
    """The Tune searcher: define-by-run over `space`, the study persisted at `storage_url` under `study_name`.

    Grid combinations of the space are enqueued first (`points_to_evaluate`), so a grid preset runs each
    combination exactly once before anything is sampled.
    """
    grid = [g for g in space.grid(num_layers) if g]
    return SweepOptunaSearch(
        space=functools.partial(_define_by_run, space=space, num_layers=num_layers),
        metric=[m for m, _ in objectives],
        mode=[mode for _, mode in objectives],
        points_to_evaluate=grid or None,
        sampler=make_sampler(search, num_trials),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage_url),
    )
