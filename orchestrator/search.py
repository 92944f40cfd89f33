"""Optuna behind Ray Tune: samplers, the persisted study, and honest trial states.

`StudySearcher` is Tune's searcher over one Optuna study, through Optuna's public ask/tell API: each Tune trial
asks the study for a trial and samples the space define-by-run; each finished Tune trial is told with the state it
earned: COMPLETE only when it ran to its end and reported every objective, FAIL when it errored or its loss
diverged, PRUNED when it was stopped early (`search.early_stopping`). Ray's `OptunaSearch` tells COMPLETE for any
trial that ends without an error and a list of Nones for a multi-objective trial that lacked an objective (which
Optuna refuses, leaving a RUNNING zombie); fixing that needed its private attributes, so the searcher is our own.

With `search.constraints`, each COMPLETE or PRUNED trial gets its violations (`orchestrator.constraints.violations`)
through Optuna's `Trial.set_constraint`, one per constrained metric, before it is told: TPE, NSGA-II and GP rank
infeasible trials by them.

With `search.candidates: epochs` and a `search.trial_value` other than `last`, the searcher keeps each epoch's
reported metrics (Tune's `on_trial_result`) and tells a COMPLETE trial the epoch `orchestrator.candidates.pick`
chooses, with its constraints and metrics; the epoch is the user attribute `clreg.epoch`.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher

from orchestrator.candidates import ATTR_EPOCH, pick
from orchestrator.console_log import is_verbose
from orchestrator.constraints import Bound, violations
from orchestrator.pareto import finite_number
from orchestrator.sweep_config import SearchConfig
from orchestrator.warm_start import ATTR_METRICS
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


class StudySearcher(Searcher):
    """Tune's searcher over the Optuna study `study_name` at `storage_url` (see the module docstring).

    Lifecycle: `suggest(trial_id)` asks the study for a trial, names the Tune trial in it (`ATTR_TUNE_TRIAL`, so a
    resume can tell which RUNNING trials Tune no longer knows) and samples the space on it; asked trials stay
    RUNNING in the study until `on_trial_complete` tells their outcome, so a constant-liar TPE sees them while
    they run. `limit_concurrency` wraps the searcher in Tune's `ConcurrencyLimiter`, which holds back `suggest`
    calls (and, in batch mode, the outcomes of a batch until all of it ended), never trials already asked.

    Pickled (Tune's `tuner.pkl`) and saved (Tune's searcher checkpoints) without a database connection: the study
    lives in its database, so the state is the space, the study's URL and name, the sampler, the objectives and
    the Tune trial -> Optuna trial number map, and loading reconnects, to `$CLREG_SWEEP_STUDY_URL` when the
    driver set it (`study_url_for_restore`).
    """

    def __init__(self, space: SearchSpace, num_layers: int, objectives: list[tuple[str, str]],
                 sampler: optuna.samplers.BaseSampler, study_name: str, storage_url: str,
                 grid: list[dict[str, Any]], bounds: list[Bound] = (),
                 warm: Sequence[optuna.trial.FrozenTrial] = (), trial_value: TrialValue | None = None) -> None:
        """Connect to the study, creating it when it does not exist; a new study gets the `warm` trials of earlier
        sweeps (`orchestrator.warm_start`) and the `grid` points enqueued (asked before anything is sampled), so a
        grid preset runs each combination exactly once and a resumed sweep adds nothing twice. `bounds` are the
        sweep's resolved constraints; `trial_value` picks the epoch candidate a trial is told (default: its final
        result)."""
        super().__init__(metric=[m for m, _ in objectives], mode=[mode for _, mode in objectives])
        self._space, self._num_layers, self._sampler = space, num_layers, sampler
        self._bounds = list(bounds)
        self._objectives = list(objectives)
        self._trial_value = trial_value
        self._epochs: dict[str, dict[int, dict[str, float]]] = {}  # Tune trial -> epoch -> its reported metrics
        self._study_name, self._url = study_name, storage_url
        self._numbers: dict[str, int] = {}
        self._connect(create=True)
        if not self._study.get_trials(deepcopy=False):
            self._study.add_trials(warm)
            for point in grid:
                self._study.enqueue_trial(point)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        trial = self._study.ask()
        trial.set_user_attr(ATTR_TUNE_TRIAL, trial_id)
        self._numbers[trial_id] = trial.number
        return self._space.sample(trial, self._num_layers)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """With `trial_value`, keep each epoch's metrics that carry every objective: the trial's candidates."""
        if self._trial_value is not None:
            self._keep_epoch(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._numbers[trial_id]
        # A driver killed after telling the study but before Tune saved its state restores a searcher that does not
        # know the trial ended; the study (persisted) does, and keeps the first outcome.
        key = _db_key(self._db, self._study_name, number)
        if not self._db.get_trial(key).state.is_finished():
            state, values = trial_outcome(result, self.metric, error)
            if state != optuna.trial.TrialState.FAIL:
                trial = optuna.trial.Trial(self._study, key)
                told = final_metrics(result or {})
                if state == optuna.trial.TrialState.COMPLETE and self._trial_value is not None:
                    self._keep_epoch(trial_id, result)
                    epoch = self._trial_value.pick(self._epochs[trial_id], self._objectives, self._bounds,
                                                   self._feasible_values())
                    told = self._epochs[trial_id][epoch]
                    values = [told[m] for m in self.metric]
                    trial.set_user_attr(ATTR_EPOCH, epoch)
                for bound, amount in zip(self._bounds, violations(told, self._bounds)):
                    trial.set_constraint(bound.metric, amount)
                trial.set_user_attr(ATTR_METRICS, told)
            self._study.tell(number, values, state=state)
        self._epochs.pop(trial_id, None)

    def _keep_epoch(self, trial_id: str, result: dict | None) -> None:
        metrics = final_metrics(result or {})
        epoch = (result or {}).get("epoch")
        if isinstance(epoch, int) and all(m in metrics for m in self.metric):
            self._epochs.setdefault(trial_id, {})[epoch] = metrics

    def _feasible_values(self) -> list[list[float]]:
        """The objective values of the study's COMPLETE trials that meet every constraint (what best_hv adds to)."""
        done = self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return [list(t.values) for t in done if all(c <= 0 for c in t.constraints.values())]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_db", "_study")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._url = os.environ.get(STUDY_URL_ENV) or self._url
        self._connect(create=False)

    def _connect(self, create: bool) -> None:
        """Open the study at `self._url` (created with the objectives' directions when `create` and missing)."""
        self._db = optuna.storages.RDBStorage(self._url)
        if create:
            directions = ["maximize" if mode == "max" else "minimize" for mode in self.mode]
            self._study = optuna.create_study(storage=self._db, sampler=self._sampler, study_name=self._study_name,
                                              directions=directions, load_if_exists=True)
        else:
            self._study = optuna.load_study(study_name=self._study_name, storage=self._db, sampler=self._sampler)


@dataclass(frozen=True)
class TrialValue:
    """`search.trial_value` resolved: the rule (`orchestrator.candidates.pick`) and, for first_at_oracle, the metric
    and the oracle's value of it."""

    rule: str
    selection_metric: str | None = None
    oracle_value: float | None = None

    def pick(self, values: Mapping[int, Mapping[str, float]], objectives: Sequence[tuple[str, str]],
             bounds: Sequence[Bound], told: Sequence[Sequence[float]]) -> int:
        return pick(self.rule, values, objectives, bounds, told, self.selection_metric, self.oracle_value)


def final_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a trial's final result that some metric suite reports, as finite numbers: kept with the
    trial in the study, so a later sweep warm-started from this one can judge it against its own constraints."""
    from trainables.metrics import REPORTED

    return {k: float(v) for k, v in result.items() if k in REPORTED and finite_number(v)}


def _db_key(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's own key of trial `number` of the study, which its per-trial methods take."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


@contextmanager
def study_url_for_restore(url: str) -> Iterator[None]:
    """While it lasts, a `StudySearcher` unpickled by Tune reconnects to the study at `url`; the variable is
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
    storage = optuna.storages.RDBStorage(storage_url)
    loaded = optuna.load_study(study_name=study, storage=storage)
    lost = [t for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get(ATTR_TUNE_TRIAL) not in known_trial_ids]
    for t in lost:
        storage.set_trial_user_attr(_db_key(storage, study, t.number), ATTR_LOST, reason)
        loaded.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return [t.number for t in lost]


def startup_trials(num_trials: int) -> int:
    """Random trials before TPE or GP model the results: a quarter of the budget, between 3 and Optuna's default 10.

    With Optuna's fixed 10, a laptop sweep of 8 trials never leaves random search, and a sweep of 16 models only
    its last 6 (benchmarks/search_efficiency.py measured every sampler tied with random until trial 9-11).
    """
    return max(3, min(10, num_trials // 4))


# The samplers that read a trial's constraints (Optuna 5): they rank infeasible trials below feasible ones.
CONSTRAINED_SAMPLERS = ("tpe", "nsga2", "gp")


def make_sampler(search: SearchConfig, num_trials: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by `search.sampler`, seeded.

    TPE is multivariate (Optuna 5's multi-objective TPE is not, by default); TPE and GP start modelling after
    `startup_trials(num_trials)` random trials; NSGA-II gets a population of a quarter of the budget (at least 4)
    because its default of 50 leaves it random search for a whole laptop sweep; `grid` enumerates the space's grid
    combinations, which the searcher enqueues, so its sampler only sees enqueued trials. TPE, NSGA-II and GP read
    the constraints the searcher sets on each trial; random and grid proposals do not depend on results, so
    constraints do not change them (infeasible trials still leave the front).
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


def make_searcher(space: SearchSpace, num_layers: int, objectives: list[tuple[str, str]], search: SearchConfig,
                  num_trials: int, study_name: str, storage_url: str, bounds: list[Bound] = (),
                  warm: Sequence[optuna.trial.FrozenTrial] = (), oracle_value: float | None = None) -> StudySearcher:
    """The Tune searcher: define-by-run over `space`, the study persisted at `storage_url` under `study_name`, the
    `warm` trials added and the space's grid combinations enqueued first when the study is new; `bounds` are
    `search.constraints` resolved; `oracle_value` is the oracle's `search.selection_metric`."""
    if not is_verbose():  # "A new study created in RDB with name ..." and the like: the sweep's own lines say it
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_value = (TrialValue(search.trial_value, search.selection_metric, oracle_value)
                   if search.candidates == "epochs" and search.trial_value != "last" else None)
    return StudySearcher(space, num_layers, objectives, make_sampler(search, num_trials), study_name, storage_url,
                         grid=[g for g in space.grid(num_layers) if g], bounds=bounds, warm=warm,
                         trial_value=trial_value)


def limit_concurrency(searcher: StudySearcher, search: SearchConfig) -> ConcurrencyLimiter:
    """`search.max_concurrent` trials at once, in `search.order`.

    `deterministic` is Tune's batch mode: `max_concurrent` points are asked, and the study is told nothing until
    all of them ended; each ask then sees the same finished trials in the same study (a sampler reads them by
    trial number, not by the order they were told), and asks happen in trial order, so the sampler's seed decides
    every proposal. `async` asks a new point as soon as any trial ends: no slot waits for its batch's slowest
    trial, but which trials have finished when a point is asked depends on the machine's timing. The limiter's
    state (the batch's trials and the results it holds back) is saved and restored with Tune's experiment.
    """
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent, batch=search.order == "deterministic")
