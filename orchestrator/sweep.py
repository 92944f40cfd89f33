"""The sweep driver: validate everything, prepare once, then Ray Tune runs Optuna's trials, MLflow records them.

Each Tune trial is a small function (`orchestrator.trial_driver`) that turns the sampled parameters into the
trial's resolved record (`trial.json`) and runs the trial's DeepSpeed job in a warm slot (`orchestrator.slots`) or
as a Ray Train run like `clreg-sweep run`, forwarding rank 0's per-epoch reports to Tune and reporting the result
its seeds' outcome files hold. The sweep
directory holds everything needed to resume or report: the resolved sweep file, the Optuna study (SQLite unless an
RDB URL is given), Tune's experiment state and each trial's outputs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import tracking
from orchestrator.candidates import selection_reference
from orchestrator.constraints import TAG_CONSTRAINTS, Bound, ConstraintError, resolve_bounds
from orchestrator.early_stopping import DominatedStopping
from orchestrator.pareto_artifacts import Marker
from orchestrator.preflight import DataCheck, check_trial
from orchestrator.run_record import RunRecord, collect
from orchestrator.search_check import check_candidates, check_early_stopping, check_metrics
from orchestrator.sweep_config import SearchConfig, SweepConfig
from orchestrator.sweep_state import STATE_FILE, read_state
from orchestrator.trial_driver import trial_driver
from orchestrator.trial_record import build_record
from orchestrator.warm_start import WarmStartError, check_sources, warm_trials
from orchestrator.writable import write_problem
from search_spaces.presets import load_preset
from search_spaces.space import SearchSpace, is_grid
from trainables.atomic_files import write_bytes_atomic, write_json_atomic
from trainables.report_keys import DIVERGED

SWEEP_FILE = "sweep.yaml"
TUNE_NAME = "tune"
# Sections a search space may not touch: every trial of a sweep shares one prepared target model and benchmark.
FROZEN_SECTIONS = ("data", "model", "prepare", "attack", "output_dir")


class SweepError(ValueError):
    """The sweep cannot start or resume as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class SweepPaths:
    """The files of one sweep, under `storage.dir/name`."""

    root: Path

    @property
    def sweep_file(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def tune(self) -> Path:
        return self.root / TUNE_NAME

    def optuna_url(self, cfg: SweepConfig) -> str:
        return cfg.storage.optuna_url or f"sqlite:///{self.root / 'optuna.db'}"


def sweep_paths(cfg: SweepConfig) -> SweepPaths:
    return SweepPaths(Path(cfg.storage.dir).resolve() / cfg.name)


def resolve_space(cfg: SweepConfig) -> SearchSpace:
    """The sweep's search space: a shipped preset by name or an inline definition, with `search.trial_seeds`."""
    space = load_preset(cfg.space) if isinstance(cfg.space, str) else SearchSpace.from_dict(cfg.space)
    return space.with_seeds(cfg.search.trial_seeds) if cfg.search.trial_seeds is not None else space


@dataclass(frozen=True)
class ValidatedSweep:
    """What `validate_sweep` established, reused by the driver so nothing is loaded twice."""

    cfg: SweepConfig
    space: SearchSpace
    num_layers: int
    num_trials: int
    bench: Any
    pure_grid: bool  # every parameter is a grid: each combination runs once, whatever the sampler
    data: DataCheck  # rows truncated per split, optional sets absent: `validate` prints them
    warm_sources: list[SweepConfig]  # the `search.warm_start` sweeps, checked compatible

    @property
    def search_text(self) -> str:
        """How the points are chosen, for the lines `validate` and `sweep` print."""
        return ("every grid combination once" if self.pure_grid
                else f"sampler {self.cfg.search.sampler}")

    @property
    def method_text(self) -> str:
        """The base method, or the methods the space fixes, grids or samples over."""
        spec = self.space.params.get("method.name")
        if spec is not None:
            return ", ".join(map(str, spec.options(self.num_layers)))
        fixed = self.space.fixed.get("method.name")
        return str(fixed.value) if fixed is not None and not fixed.when else self.cfg.base.method.name


def validate_sweep(cfg: SweepConfig, address: str | None = None) -> ValidatedSweep:
    """All checks that need no cluster, before anything is written or started: stores, base trial config, data,
    model, every point of the space against base, objectives, sampler.

    Args:
        cfg: the sweep.
        address: the Ray cluster the sweep joins (or `RAY_ADDRESS`); without one, every trial must fit this machine,
            where a local cluster would start. With one the sweep only warns once it sees the cluster's nodes.

    Raises:
        SweepError, ConfigError or another ValueError naming the field and the allowed values.
    """
    from orchestrator.cluster import this_machine
    from orchestrator.search import check_storage_url
    from orchestrator.space_check import check_space

    check_storage_dir(Path(cfg.storage.dir))
    tracking.check_tracking(sweep_tracking_uri(cfg), create=False)
    if cfg.storage.optuna_url:
        check_storage_url(cfg.storage.optuna_url)
    trial = check_trial(cfg.base)
    bench = trial.bench
    space = resolve_space(cfg)
    num_layers = trial.num_layers
    frozen = [p for p in space.params if p.split(".")[0] in FROZEN_SECTIONS]
    if frozen:
        raise SweepError(f"space: {', '.join(frozen)} cannot be searched (one prepared model and benchmark per "
                         f"sweep, one attack protocol); searchable sections: method, clreg, train, eval")
    try:
        check_metrics(cfg, trial.oracle_log)
    except ValueError as e:
        raise SweepError(str(e)) from None
    grid = [g for g in space.grid(num_layers) if g]
    sampled = [name for name, p in space.params.items() if not is_grid(p)]
    num_trials = cfg.search.num_trials
    if cfg.search.sampler == "grid" and (sampled or not grid):
        raise SweepError(f"search.sampler=grid needs a space of grid parameters only; sampled: {sampled}")
    if grid and not sampled:
        # A pure grid (the ablation presets) is enumerated exactly once, whatever the sampler.
        num_trials = len(grid)
    try:
        check_early_stopping(cfg, space)
        check_candidates(cfg, space)
        slot_mode(cfg.search, space)
    except ValueError as e:
        raise SweepError(str(e)) from None
    local = not (address or os.environ.get("RAY_ADDRESS"))
    check_space(cfg.base, space, num_layers, bench, this_machine() if local else None)
    try:
        warm_sources = check_sources(cfg, space)
    except WarmStartError as e:
        raise SweepError(str(e)) from None
    return ValidatedSweep(cfg, space, num_layers, num_trials, bench, pure_grid=bool(grid and not sampled),
                          data=trial.data, warm_sources=warm_sources)


def slot_mode(search: SearchConfig, space: SearchSpace) -> tuple[str, str]:
    """How the sweep's trials get their workers (`search.slots`), and why: warm slots need every trial to ask for the
    same resources, so a space that searches them runs cold.

    Raises:
        ValueError: `search.slots: warm` with a space that searches a trial's resources.
    """
    from orchestrator.space_check import RESOURCE_PATHS

    searched = [p for p in space.params if p in RESOURCE_PATHS]
    if search.slots == "warm" and searched:
        raise ValueError(f"search.slots: warm needs every trial to ask for the same resources, but the space searches "
                         f"{', '.join(searched)}; allowed: cold, or leave search.slots unset")
    if search.slots == "cold":
        return "cold", "search.slots: cold: one Ray Train run per trial"
    if searched:
        return "cold", f"the space searches {', '.join(searched)}, so trials ask for different resources"
    return "warm", (f"every trial asks for the same resources; a slot is replaced after "
                    f"{search.slot_recycle_trials} trials or {search.slot_max_growth_gb:g} GB of memory growth")


@contextlib.contextmanager
def trial_slots(cfg: SweepConfig, mode: str, num_trials: int):
    """The name of the sweep's slot pool while it runs (warm), or None (cold); the pool and its slots end with the
    block, so what runs after the trials (front attacks) gets their CPUs/GPUs back. The pool starts building as
    many slots as trials will run at once, while Tune starts."""
    if mode != "warm":
        yield None
        return
    import ray

    from orchestrator.slots import SlotShape, start_pool

    name = f"clreg-slots-{cfg.name}-{os.getpid()}"
    pool = start_pool(name, SlotShape.of(cfg.base.train), cfg.search.slot_recycle_trials,
                      cfg.search.slot_max_growth_gb, prebuild=min(cfg.search.max_concurrent, num_trials))
    try:
        yield name
    finally:
        ray.get(pool.shutdown.remote())
        ray.kill(pool)


def check_storage_dir(path: Path) -> None:
    """The sweep directory must be creatable under `storage.dir`: checked before anything starts, creating nothing.

    Raises:
        SweepError naming the path and the reason (a file in the way, no write permission, read-only filesystem).
    """
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise SweepError(f"storage.dir {path}: {path} is a file, not a directory")
    problem = write_problem(path)
    if problem:
        raise SweepError(f"storage.dir {path}: {problem}")


def sweep_tracking_uri(cfg: SweepConfig) -> str:
    """The MLflow store the sweep logs to: `mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else `mlflow.db` in
    the working directory."""
    return cfg.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.default_tracking_uri(Path.cwd())


@dataclass
class SweepOutcome:
    """What a finished (or stopped) sweep produced."""

    paths: SweepPaths
    tracking_uri: str
    summary: tracking.ParetoSummary
    num_errors: int  # trials that crashed more often than search.max_trial_failures allows
    num_diverged: int  # trials whose loss became NaN/inf (Optuna FAIL, MLflow FAILED)
    interrupted: bool
    notes: list[str] = field(default_factory=list)  # what the front cannot show (`References.at_target`)


def run_sweep(checked: ValidatedSweep, address: str | None = None, resume: bool = False,
              log=print) -> SweepOutcome:
    """Run (or resume) the sweep `checked` describes on the cluster at `address` (or a local one)."""
    from orchestrator.attack_reference import trial_attack_reference
    from orchestrator.cluster import check_resources_before_start, ray_cluster, warn_if_trial_does_not_fit
    from orchestrator.console_log import is_verbose
    from orchestrator.front_attack import attack_front
    from orchestrator.prepare import prepare
    from orchestrator.references import load_references
    from orchestrator.search import study_url_for_restore
    from trainables.data.loading import benchmark_fingerprint

    cfg = checked.cfg
    paths = sweep_paths(cfg)
    uri = sweep_tracking_uri(cfg)
    tracking.check_tracking(uri)
    check_resources_before_start(cfg.base.train, address)
    # Saved with absolute locations, so `resume` and `report` work from any directory.
    cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"dir": str(paths.root.parent)}),
                                 "mlflow": cfg.mlflow.model_copy(update={"tracking_uri": uri})})
    _check_sweep_dir(paths, cfg, resume)
    with ray_cluster(address):
        warn_if_trial_does_not_fit(cfg.base.train, log)
        prepared = prepare(cfg.base, log=log, bench=checked.bench)
        attack_ref = trial_attack_reference(cfg.base, prepared, log)
        references = load_references(cfg.base, prepared, checked.bench, log=log)
        try:
            bounds = resolve_bounds(cfg.search.constraints, references)
            oracle_value = selection_reference(cfg.search, references)
        except ConstraintError as e:  # before the sweep folder exists: the prepared models stay cached
            raise SweepError(str(e)) from None
        if not resume:
            _create_sweep_dir(paths, cfg)
        names = [m for m, _ in cfg.objective_modes]
        markers = references.markers(names)
        log(f"sweep {cfg.name}: reference points {references.describe(names)}")
        if bounds:
            log(f"sweep {cfg.name}: constraints {'; '.join(b.text for b in bounds)}: trials outside them are kept "
                f"but never on the front{constraint_note(cfg.search.sampler)}")
        if cfg.search.candidates == "epochs":
            log(f"sweep {cfg.name}: epoch candidates: every {cfg.base.eval.every} epoch(s) a trial's model is a point "
                f"for the front; Optuna is told {candidate_note(cfg.search, oracle_value)}; epoch models kept: "
                f"{'the front' if cfg.search.keep_models == 'front' else 'all'}")
        record = collect(benchmark_fingerprint(checked.bench))
        runs = tracking.open_sweep(uri, cfg.mlflow.experiment or cfg.name, cfg.name,
                                   {**cfg.model_dump(mode="json", by_alias=True), **record.params(cfg.base)})
        tracking.log_metrics(runs, runs.parent_run_id, references.metrics())
        tracking.set_tags(runs, runs.parent_run_id,
                          references.tags() | ({TAG_CONSTRAINTS: "\n".join(b.text for b in bounds)} if bounds else {}))
        if resume:
            _drop_lost_trials(paths, cfg, runs, log)
            tracking.close_zombies(runs)
        write_json_atomic(paths.state_file, {"parent_run_id": runs.parent_run_id,
                                             "experiment_id": runs.experiment_id, "tracking_uri": uri,
                                             "target_dir": prepared.target_dir})
        goals = ", ".join(f"{metric} ({mode})" for metric, mode in cfg.objective_modes)
        log(f"sweep {cfg.name}: {checked.num_trials} trials of {checked.method_text}, {cfg.search.max_concurrent} "
            f"at a time ({cfg.search.order} order), {checked.search_text}, objectives {goals}")
        if not is_verbose():
            log("Ray's and DeepSpeed's info logs stay in Ray's session logs (/tmp/ray/session_latest/logs on a local "
                "cluster); --verbose prints them here")
        mode, why = slot_mode(cfg.search, checked.space)
        log(f"sweep {cfg.name}: trials run on {mode} slots ({why})")
        # Where a restored searcher finds the study: this folder's, also when the folder has moved since it started.
        with study_url_for_restore(paths.optuna_url(cfg)), trial_slots(cfg, mode, checked.num_trials) as slot_pool:
            results = _tuner(checked, paths, prepared, attack_ref, runs, resume, record, markers, bounds, log,
                             oracle_value, slot_pool).fit()
        # Stopped before every trial ended (Ctrl-C): the parent run must not look complete; `resume` reopens it.
        interrupted = results.num_terminated + results.num_errors < checked.num_trials
        if cfg.base.attack.when == "front" and not interrupted:
            front = tracking.update_pareto(runs, cfg.objective_modes, markers=markers).front
            attack_front(cfg.base, front, runs, paths.trials, prepared, log)
    summary = tracking.update_pareto(runs, cfg.objective_modes, markers=markers,
                                     epochs=cfg.search.candidates == "epochs")
    # Trials that crashed beyond their retries make the sweep FAILED; diverged trials are search outcomes.
    tracking.close_sweep(runs, "KILLED" if interrupted else "FAILED" if results.num_errors else "FINISHED")
    diverged = sum(1 for r in results if r.metrics and r.metrics.get(DIVERGED))
    what = "epoch candidates" if cfg.search.candidates == "epochs" else "trials"
    values = {name: [point[i] for point in summary.points] for i, name in enumerate(names)}
    notes = [f"note: {same} of {total} {what} ended with {name} exactly at the target's own value ({value:.4g}): "
             "on this benchmark it did not register what they changed"
             for name, same, total, value in references.at_target(values)]
    return SweepOutcome(paths, uri, summary, results.num_errors, diverged, interrupted, notes)


def candidate_note(search: SearchConfig, oracle_value: float | None) -> str:
    """Which epoch candidate Optuna is told (`search.trial_value`), for the sweep's start line."""
    if search.trial_value == "best_hv":
        return "the epoch adding most hypervolume (best_hv)"
    if search.trial_value == "first_at_oracle":
        return (f"the first epoch with {search.selection_metric} <= the oracle's {oracle_value:.4g} "
                "(first_at_oracle), else the last")
    return "the last epoch (last)"


def constraint_note(sampler: str) -> str:
    """What the sampler does with `search.constraints`, for the sweep's start line."""
    from orchestrator.search import CONSTRAINED_SAMPLERS

    if sampler in CONSTRAINED_SAMPLERS:
        return f"; sampler {sampler} is told each trial's violations"
    return f"; sampler {sampler} proposes points without looking at results, so the constraints do not steer it"


def warm_note(sampler: str) -> str:
    """What the sampler makes of warm-start trials, for the sweep's start line."""
    if sampler in ("tpe", "gp"):
        return f"; sampler {sampler} models them with this sweep's trials (they count toward its random start-up)"
    if sampler == "nsga2":
        return "; sampler nsga2 does not use them (its generations hold only this sweep's own trials)"
    return f"; sampler {sampler} proposes points without looking at results, so they do not steer it"


def _drop_lost_trials(paths: SweepPaths, cfg: SweepConfig, runs: tracking.SweepRuns, log) -> None:
    """Before a resume: trials that started after Tune's last experiment-state save are unknown to the restored
    experiment, which will sample new trials in their place; their Optuna trials become FAIL and their MLflow
    children are deleted, so the finished sweep counts each requested trial once (see README, Reliability)."""
    from ray.tune import ExperimentAnalysis

    from orchestrator.search import fail_lost_trials, sweep_study_name

    known = {t.trial_id for t in ExperimentAnalysis(str(paths.tune)).trials}
    reason = "started after Tune's last experiment-state save before the driver stopped; run again as a new trial"
    numbers = fail_lost_trials(paths.optuna_url(cfg), sweep_study_name(cfg.name), known, reason)
    run_ids = tracking.drop_lost_children(runs, known, reason)
    if numbers or run_ids:
        log(f"resume: {len(run_ids)} trial(s) started after Tune's last state save are run anew: Optuna trials "
            f"{numbers} marked FAIL, MLflow runs {run_ids} deleted (tag {tracking.TAG_LOST})")


def _tuner(checked: ValidatedSweep, paths: SweepPaths, prepared, attack_ref: str | None, runs: tracking.SweepRuns,
           resume: bool, record: RunRecord, markers: list[Marker], bounds: list[Bound], log: Callable[[str], Any],
           oracle_value: float | None = None, slot_pool: str | None = None):
    """Tune's experiment: a new one, or the saved one restored (which keeps its callback, record and markers)."""
    from ray import tune

    from orchestrator.search import limit_concurrency, make_searcher, sweep_study_name

    # Objectives arrive with the trial's evaluation (its last report, or every `eval.every` epochs); per-epoch
    # training reports do not carry them, which Tune's strict check would reject. The searcher reads the final
    # result (`orchestrator.search.trial_outcome`), and with `search.trial_value` every evaluated epoch's.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Tune's legacy output engine: the only one that takes the table's columns from us (see `SweepTable`).
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    from orchestrator.tune_tracking import SweepTracker, sweep_table

    cfg = checked.cfg
    objectives = cfg.objective_modes
    candidates = cfg.search.candidates == "epochs"
    # The epochs a trial evaluates are candidates: their models are kept (`orchestrator.candidates`).
    trial_base = cfg.base
    if candidates:
        trial_base = trial_base.model_copy(update={"eval": trial_base.eval.model_copy(
            update={"keep_epoch_models": True})})
    base = trial_base.model_dump(mode="json", by_alias=True)
    seeds = checked.space.repeat_seeds
    trainable = tune.with_parameters(
        trial_driver, base=base, target_dir=prepared.target_dir, oracle_reference=prepared.oracle_reference,
        attack_reference=attack_ref, trials_dir=str(paths.trials), repeat_seeds=seeds, num_layers=checked.num_layers,
        slot_pool=slot_pool,
    )
    # The trial driver only waits on its workers (a Ray Train run's or a warm slot's), which hold the CPUs/GPUs in
    # their own placement group. Tune refuses an all-zero request, so the driver asks for one byte of memory: it
    # then blocks no CPU, and 2 one-CPU trials run side by side on a 2-core laptop (with {"CPU": 1} only one would
    # fit).
    trainable = tune.with_resources(trainable, {"memory": 1})
    if resume:
        return tune.Tuner.restore(str(paths.tune), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False)
    warm = warm_trials(checked.warm_sources, checked.space, checked.num_layers, bounds)
    if checked.warm_sources:
        log(f"sweep {cfg.name}: warm start with {warm.describe()}{warm_note(cfg.search.sampler)}")
    stopping = cfg.search.early_stopping
    scheduler = (DominatedStopping(objectives, cfg.base.train.epochs, stopping.grace_epochs, stopping.margin)
                 if stopping.enabled else None)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=limit_concurrency(
                make_searcher(checked.space, checked.num_layers, objectives, cfg.search, checked.num_trials,
                              study_name=sweep_study_name(cfg.name), storage_url=paths.optuna_url(cfg),
                              bounds=bounds, warm=warm.trials, oracle_value=oracle_value),
                cfg.search),
            scheduler=scheduler,
            num_samples=checked.num_trials,
            # A finished trial's actor runs the next one: its process start and imports are paid once per slot.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=TUNE_NAME,
            storage_path=str(paths.root),
            callbacks=[SweepTracker(runs, objectives,
                                    functools.partial(build_record, base=base, repeat_seeds=seeds,
                                                      num_layers=checked.num_layers),
                                    record, markers, num_trials=checked.num_trials,
                                    params=list(checked.space.params), bounds=bounds, candidates=candidates,
                                    prune_in=paths.trials if candidates and cfg.search.keep_models == "front"
                                    else None)],
            failure_config=tune.FailureConfig(max_failures=cfg.search.max_trial_failures),
            progress_reporter=sweep_table([m for m, _ in objectives], list(checked.space.params)),
            verbose=1,
        ),
    )


def _check_sweep_dir(paths: SweepPaths, cfg: SweepConfig, resume: bool) -> None:
    """Before the cluster starts: a new sweep needs a new directory; a resume needs the old one, with every file it
    continues from intact."""
    if resume:
        check_resumable(cfg)
    elif paths.sweep_file.exists():
        raise SweepError(f"sweep directory {paths.root} exists: `clreg-sweep resume {paths.root}` continues it, "
                         f"or choose another name (--set name=...)")


def _create_sweep_dir(paths: SweepPaths, cfg: SweepConfig) -> None:
    """A new sweep's directory with its resolved sweep file, once nothing can refuse the sweep any more."""
    paths.root.mkdir(parents=True, exist_ok=True)
    if not os.access(paths.root, os.W_OK):
        raise SweepError(f"storage.dir {paths.root.parent} is not writable")
    write_bytes_atomic(paths.sweep_file,
                       yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False).encode())


def load_sweep_dir(root: str | Path, log: Callable[[str], None] | None = None) -> SweepConfig:
    """The resolved sweep file a sweep directory was started with, placed where the directory is now.

    A folder moved since (another disk, another parent) is continued and reported in place: `storage.dir` becomes
    its parent, and `log` (when given) says so. A renamed folder is refused: its Optuna study and MLflow parent run
    are found by the sweep's name, which a resume under the folder's new name would not find.

    Raises:
        SweepError: `root` is not a sweep directory, or its name is not the sweep's.
        ConfigError: its sweep file does not parse or validate (the message names the file).
    """
    from orchestrator.config_files import load_config

    given = Path(root)
    folder = given.resolve()
    if not folder.is_dir():
        raise SweepError(f"{given} is not a sweep directory: it {'is a file' if folder.exists() else 'does not exist'}"
                         " (give the folder `clreg-sweep sweep` printed: storage.dir/<sweep name>)")
    f = folder / SWEEP_FILE
    if not f.is_file():
        raise SweepError(f"{given} is not a sweep directory (no {SWEEP_FILE})")
    cfg = load_config(SweepConfig, f)
    if cfg.name != folder.name:
        raise SweepError(f"{folder}: the folder is named {folder.name!r} but its {SWEEP_FILE} is sweep {cfg.name!r}; "
                         f"its Optuna study and MLflow parent run are found by that name: rename the folder back to "
                         f"{cfg.name!r} (it may stay in any parent directory)")
    recorded = Path(cfg.storage.dir).expanduser().resolve()
    if recorded == folder.parent:
        return cfg
    if log is not None:
        log(f"{folder}: moved from {recorded / cfg.name}; continuing it where it is now")
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"dir": str(folder.parent)})})


def check_resumable(cfg: SweepConfig) -> None:
    """Before Ray starts: every file a resume continues from is there and readable, so a damaged folder is refused
    naming the file instead of failing with a traceback once the cluster and `prepare` have run.

    Checked: Tune's experiment (`tune/tuner.pkl` and the newest `experiment_state-*.json`, which must parse), the
    Optuna study (the database opens, passes SQLite's integrity check and holds the sweep's study) and
    `sweep_state.json`.

    Raises:
        SweepError or SweepStateError naming the file and what is wrong with it.
    """
    from orchestrator.search import sweep_study_name

    paths = sweep_paths(cfg)
    _check_tune_experiment(paths)
    check_study(paths.optuna_url(cfg), sweep_study_name(cfg.name))
    read_state(paths.root)


# Tune's files in `tune/`: the pickled Tuner (`Tuner.restore` reads it first) and its experiment states, one per
# driver session; the newest by name is the one Tune restores (`_find_newest_experiment_checkpoint`).
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATES = "experiment_state-*.json"


def _check_tune_experiment(paths: SweepPaths) -> None:
    if not paths.tune.is_dir():
        raise SweepError(f"{paths.root} holds no Tune experiment to resume ({paths.tune} is missing: the sweep "
                         f"stopped before its first trial); remove {paths.root} and start the sweep again")
    states = sorted(paths.tune.glob(EXPERIMENT_STATES))
    if not (paths.tune / TUNER_FILE).is_file() or not states:
        missing = TUNER_FILE if states else EXPERIMENT_STATES
        raise SweepError(f"{paths.tune} has no {missing}: Tune's experiment is incomplete, so the sweep cannot be "
                         f"resumed (`clreg-sweep report {paths.root}` still reads its finished trials)")
    newest = states[-1]
    try:
        state = json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SweepError(f"{newest}: Tune's experiment state cannot be read ({tracking.first_line(error)}); the file "
                         f"is damaged, so the sweep cannot be resumed (`clreg-sweep report {paths.root}` still reads "
                         "its finished trials)") from None
    if not isinstance(state, dict) or not {"runner_data", "trial_data"} <= state.keys():
        raise SweepError(f"{newest}: not a Tune experiment state (no runner_data / trial_data); the file is damaged, "
                         "so the sweep cannot be resumed")


def check_study(url: str, study: str) -> None:
    """The Optuna storage at `url` opens, passes SQLite's integrity check (a SQLite file) and holds `study`."""
    from sqlalchemy.engine import make_url

    if url.startswith("sqlite:"):
        database = Path(make_url(url).database or "")
        where = str(database)
        if not database.is_file():
            raise SweepError(f"Optuna study file {database} does not exist: the sweep's study is gone, so it cannot "
                             "be resumed")
        try:
            # rw, not ro: a driver killed mid-write leaves a journal that only a writable connection rolls back
            # (as the resumed sweep would); mode=rw still never creates a file.
            with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=rw", uri=True)) as db:
                problems = [row[0] for row in db.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
                names = {row[0] for row in db.execute("SELECT study_name FROM studies")}
        except sqlite3.Error as error:
            raise SweepError(f"Optuna study file {database} is damaged or not an Optuna database ({error}); the "
                             "sweep cannot be resumed from it") from None
    else:
        where = tracking.redact(url)
        names = _study_names(url)
    if study not in names:
        held = ", ".join(sorted(names)[:5]) or "none"
        raise SweepError(f"Optuna storage {where} holds no study {study!r} (it holds: {held}); the sweep cannot be "
                         "resumed from it")


def _study_names(url: str) -> set[str]:
    """The studies of an RDB storage (PostgreSQL, MySQL), connecting within seconds and creating no tables."""
    import optuna
    from sqlalchemy.engine import make_url

    from orchestrator.search import connect_args

    connect = {"connect_args": connect_args(make_url(url).get_backend_name(), timeout_s=10)}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=connect, skip_table_creation=True)
        return {s.study_name for s in storage.get_all_studies()}
    except Exception as error:  # any driver's error: the URL is the user's input
        raise SweepError(f"Optuna storage {tracking.redact(url)} cannot be read: "
                         f"{tracking.redact(tracking.first_line(error))}") from None
