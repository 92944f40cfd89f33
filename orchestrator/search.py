"""Optuna behind Ray Tune: samplers, the persisted study, and honest trial states.

Ray's `OptunaSearch` tells Optuna COMPLETE for any trial that ends without an error, and on a multi-objective
trial that failed or lacked an objective it tells a list of Nones, which Optuna refuses, leaving a RUNNING zombie
in the study. `SweepOptunaSearch` fixes the one method involved: a trial is COMPLETE only when it ran to its end
and reported every objective, FAIL when it errored or its loss diverged, PRUNED when it was stopped early (ASHA).
"""

from __future__ import annotations

import functools
import math
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from orchestrator.console_log import is_verbose
from orchestrator.sweep_config import SearchConfig
from orchestrator.writable import sqlite_problem
from search_spaces.space import SearchSpace
from trainables.report_keys import DIVERGED, TRIAL_COMPLETE

# Optuna user attributes: the Tune trial an Optuna trial was asked for, and why a lost trial was failed.
ATTR_TUNE_TRIAL = "tune_trial_id"
ATTR_LOST = "clreg.lost"


def sweep_study_name(sweep_name: str) -> str:
    """The Optuna study of a sweep, unique to its name within a shared Optuna storage."""
    return f"clreg-sweep:{sweep_name}"


# The study URL a searcher restored from a sweep folder reconnects to, set by the driver before `Tuner.restore`:
# a sweep folder moved since it started holds its SQLite study in the moved folder, not at the saved address.
STUDY_URL_ENV = "CLREG_SWEEP_STUDY_URL"


class SweepOptunaSearch(OptunaSearch):
    """`OptunaSearch` whose completed trials carry the right Optuna state (see the module docstring).

    Pickled (Tune's `tuner.pkl` and searcher checkpoints) without its storage connection: the study lives in its
    database, so the pickle keeps the study's URL and the trials' ids and reconnects on load, to
    `$CLREG_SWEEP_STUDY_URL` when the driver set it. Optuna's `RDBStorage` unpickled as such would reopen the saved
    URL and create an empty database there (or fail) when the folder has moved.
    """

    def __getstate__(self) -> dict:
        return _portable(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(_reconnected(state))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(_portable(self.__dict__), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(_reconnected(pickle.load(f)))

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


@contextmanager
def study_url_for_restore(url: str) -> Iterator[None]:
    """While it lasts, a `SweepOptunaSearch` unpickled by Tune reconnects to the study at `url`; the variable is
    removed after, so a later searcher in the same process (tests, a notebook) is not pointed at this study."""
    saved = os.environ.get(STUDY_URL_ENV)
    os.environ[STUDY_URL_ENV] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(STUDY_URL_ENV, None)
        else:
            os.environ[STUDY_URL_ENV] = saved


def _portable(state: dict) -> dict:
    """A searcher's attributes with its RDB connection replaced by the study's URL and its trials by their ids."""
    storage = state.get("_storage")
    if not isinstance(storage, optuna.storages.RDBStorage):
        return dict(state)
    return {**state, "_storage": None, "_ot_study": None, "_storage_url": storage.url,
            "_ot_trials": {tid: t._trial_id for tid, t in state["_ot_trials"].items()}}


def _reconnected(state: dict) -> dict:
    """`_portable`'s inverse: the study loaded from its database (the driver's URL first), with the same sampler."""
    if "_storage_url" not in state:
        return state
    state = dict(state)
    storage = optuna.storages.RDBStorage(os.environ.get(STUDY_URL_ENV) or state.pop("_storage_url"))
    state.pop("_storage_url", None)
    study = optuna.load_study(study_name=state["_study_name"], storage=storage, sampler=state["_sampler"],
                              pruner=optuna.pruners.NopPruner())
    trials = {tid: optuna.Trial(study, trial_id) for tid, trial_id in state["_ot_trials"].items()}
    return {**state, "_storage": storage, "_ot_study": study, "_ot_trials": trials}


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


# Seconds a database server gets to accept a connection at preflight; drivers that take a timeout.
CONNECT_TIMEOUT_S = 5
_TIMEOUT_ARGS = {"postgresql": "connect_timeout", "mysql": "connect_timeout", "mariadb": "connect_timeout"}


def connect_args(backend: str, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, float]:
    """SQLAlchemy `connect_args` bounding a connection to a `backend` database server to `timeout_s` (none for
    drivers without such an option, e.g. SQLite)."""
    name = _TIMEOUT_ARGS.get(backend)
    return {name: timeout_s} if name else {}


class StorageError(ValueError):
    """`storage.optuna_url` cannot hold the study (the message names the URL, password masked, and the cause)."""


def check_storage_url(url: str) -> None:
    """`storage.optuna_url` checked before anything starts, creating nothing.

    SQLite: the file's folder must be writable and an existing file an SQLite database. Another database: one
    connection within `CONNECT_TIMEOUT_S` (Optuna would otherwise fail after Ray and `prepare` have run, or hang on
    an unreachable host); a missing driver module is named.

    Raises:
        StorageError: naming the URL with its password masked.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"storage.optuna_url {_masked_text(url)!r} is not a database URL; allowed: "
                           "sqlite:///path/optuna.db or dialect://user:password@host/db") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(f"storage.optuna_url {shown}: an in-memory study is lost when the driver stops; "
                               "allowed: sqlite:///path/optuna.db or a database server")
        problem = sqlite_problem(Path(parsed.database))
        if problem:
            raise StorageError(f"storage.optuna_url {shown}: {problem}")
        return
    try:
        engine = create_engine(parsed, connect_args=connect_args(parsed.get_backend_name()))
    except ModuleNotFoundError as e:
        raise StorageError(f"storage.optuna_url {shown}: its database driver module {e.name!r} is not installed; "
                           f"install it (pip install {e.name}) or name an installed driver in the URL "
                           "(dialect+driver://...)") from None
    except Exception as e:  # an unknown dialect or a bad option: the URL is the user's input
        raise StorageError(f"storage.optuna_url {shown}: {_cause(e, parsed.password)}") from None
    try:
        with engine.connect():
            pass
    except Exception as e:  # any driver's error
        raise StorageError(f"storage.optuna_url {shown}: cannot connect within {CONNECT_TIMEOUT_S} s: "
                           f"{_cause(e, parsed.password)}") from None
    finally:
        engine.dispose()


def _cause(error: BaseException, password: str | None) -> str:
    """The first line of `error`, short, with the password masked should the driver quote it."""
    from orchestrator.tracking import first_line

    line = first_line(getattr(error, "orig", None) or error)
    return line.replace(password, "***") if password else line


def _masked_text(url: str) -> str:
    """A URL that does not parse, shortened, with any `user:password@` masked."""
    from orchestrator.tracking import redact

    return redact(url)[:200]


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
    if not is_verbose():  # "A new study created in RDB with name ..." and the like: the sweep's own lines say it
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return SweepOptunaSearch(
        space=functools.partial(_define_by_run, space=space, num_layers=num_layers),
        metric=[m for m, _ in objectives],
        mode=[mode for _, mode in objectives],
        points_to_evaluate=grid or None,
        sampler=make_sampler(search, num_trials),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage_url),
    )
