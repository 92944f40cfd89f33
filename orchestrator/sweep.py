"""The sweep driver: validate everything, prepare once, then Ray Tune runs Optuna's trials, MLflow records them.

Each Tune trial is a small function (`trial_driver`) that turns the sampled parameters into a `TrialConfig` and
runs the same Ray Train + DeepSpeed job as `clreg-sweep run`, forwarding rank 0's reports to Tune. The sweep
directory holds everything needed to resume or report: the resolved sweep file, the Optuna study (SQLite unless an
RDB URL is given), Tune's experiment state and each trial's outputs.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import tracking
from orchestrator.pareto_artifacts import Marker
from orchestrator.preflight import DataCheck, check_trial, model_depth
from orchestrator.run_record import RunRecord, collect, trial_params
from orchestrator.sweep_config import SweepConfig
from search_spaces.presets import load_preset
from search_spaces.space import SearchSpace, apply, is_grid
from trainables.atomic_files import write_bytes_atomic, write_json_atomic
from trainables.metrics.oracle_logs import NEEDS as ORACLE_LOG_NEEDS
from trainables.report_keys import DIVERGED, DIVERGENCE_REASON

SWEEP_FILE = "sweep.yaml"
STATE_FILE = "sweep_state.json"
TUNE_NAME = "tune"
# Sections a search space may not touch: every trial of a sweep shares one prepared target model and benchmark.
FROZEN_SECTIONS = ("data", "model", "prepare", "output_dir")
# Metrics that exist only with the oracle reference that `prepare` caches.
ORACLE_METRICS = {"forget_quality", "privleak"}


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


def known_metrics() -> set[str]:
    """Every metric a trial can report: the registered evaluation metrics and the training losses."""
    from trainables.metrics import METRICS

    return set(METRICS.names()) | {"train/loss", "train/forget_loss", "train/retain_loss", "train/clreg_loss",
                                   "train_seconds", "eval_seconds"}


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

    @property
    def search_text(self) -> str:
        """How the points are chosen, for the lines `validate` and `sweep` print."""
        return ("every grid combination once" if self.pure_grid
                else f"sampler {self.cfg.search.sampler}")

    @property
    def method_text(self) -> str:
        """The base method, or the methods the space grids or samples over."""
        spec = self.space.params.get("method.name")
        if spec is None:
            return self.cfg.base.method.name
        return ", ".join(map(str, spec.options(self.num_layers)))


def validate_sweep(cfg: SweepConfig) -> ValidatedSweep:
    """All checks that need no cluster: base trial config, data, space, objectives, sampler.

    Raises:
        SweepError, ConfigError or another ValueError naming the field and the allowed values.
    """
    check_storage_dir(Path(cfg.storage.dir))
    trial = check_trial(cfg.base)
    bench = trial.bench
    space = resolve_space(cfg)
    num_layers = model_depth(cfg.base)
    frozen = [p for p in space.params if p.split(".")[0] in FROZEN_SECTIONS]
    if frozen:
        raise SweepError(f"space: {', '.join(frozen)} cannot be searched (one prepared model and benchmark per "
                         f"sweep); searchable sections: method, clreg, train, eval")
    allowed = known_metrics()
    prep = cfg.base.prepare
    # An open-unlearning log replaces any trained oracle's reference, so it must hold what each objective reads.
    oracle_log = trial.oracle_log
    for i, obj in enumerate(cfg.objectives):
        if obj.metric not in allowed:
            raise SweepError(f"objectives[{i}].metric {obj.metric!r} is reported by no metric; allowed: "
                             f"{', '.join(sorted(allowed))}")
        if obj.metric in ORACLE_METRICS and oracle_log is None and not prep.enabled and not prep.oracle_path:
            raise SweepError(f"objectives[{i}].metric {obj.metric} needs the oracle model: set prepare.enabled, "
                             f"prepare.oracle_path or prepare.oracle_logs")
        if obj.metric in ORACLE_METRICS and oracle_log is not None and not oracle_log.supplies(obj.metric):
            raise SweepError(f"objectives[{i}].metric {obj.metric} needs {ORACLE_LOG_NEEDS[obj.metric]} from the "
                             f"oracle, and prepare.oracle_logs {prep.oracle_logs} has none; allowed: a retain "
                             f"model's log that has it, or prepare.enabled / prepare.oracle_path without the log")
    grid = [g for g in space.grid(num_layers) if g]
    sampled = [name for name, p in space.params.items() if not is_grid(p)]
    num_trials = cfg.search.num_trials
    if cfg.search.sampler == "grid" and (sampled or not grid):
        raise SweepError(f"search.sampler=grid needs a space of grid parameters only; sampled: {sampled}")
    if grid and not sampled:
        # A pure grid (the ablation presets) is enumerated exactly once, whatever the sampler.
        num_trials = len(grid)
    if cfg.search.asha and cfg.base.eval.every != 1:
        raise SweepError("search.asha needs base.eval.every=1 so that every epoch reports the objectives")
    if cfg.search.asha and len(space.repeat_seeds) > 1:
        raise SweepError(f"search.asha cannot stop a trial that averages {len(space.repeat_seeds)} seeds "
                         f"(seeds {space.repeat_seeds}): set search.asha=false or search.trial_seeds to one seed")
    return ValidatedSweep(cfg, space, num_layers, num_trials, bench, pure_grid=bool(grid and not sampled),
                          data=trial.data)


def check_storage_dir(path: Path) -> None:
    """The sweep directory must be creatable under `storage.dir`: checked before anything starts, creating nothing.

    Raises:
        SweepError naming the path and the reason (a file in the way, no write permission, read-only filesystem).
    """
    path = path.resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SweepError(f"storage.dir {path}: {existing} is a file, not a directory")
    try:  # a real write: `os.access` says yes to root even where nothing can be created (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".clreg-probe-", dir=existing))
    except OSError as e:
        raise SweepError(f"storage.dir {path}: cannot create anything in {existing} ({e.strerror})") from None


def describe_trial(params: dict, base: dict, seeds: list[int] | None = None) -> dict[str, str]:
    """MLflow tags of a trial, for filtering in the dashboard: read from the trial's full config (base + params),
    so a setting the space does not search (e.g. the layer in the tau ablation) is tagged too."""
    cfg = apply(base, params)
    clreg = cfg.get("clreg", {})
    clreg_on = clreg.get("enabled", True)
    tags = {"method": str(cfg.get("method", {}).get("name", "")), "clreg": "on" if clreg_on else "off",
            "layer": str(clreg.get("layer", "")) if clreg_on else "",
            "trust_remote_code": str(bool(cfg.get("model", {}).get("trust_remote_code", False))).lower()}
    if seeds:
        tags["seeds"] = ",".join(str(s) for s in seeds)
    return tags


def trial_driver(params: dict, *, base: dict, target_dir: str, oracle_reference: str | None,
                 trials_dir: str, seeds: list[int] | None = None) -> None:
    """One Tune trial: the sampled `params` applied to `base`, run as a Ray Train + DeepSpeed job.

    With several `seeds` (a sampled space's `repeat_seeds`) one Ray Train run trains the point once per seed, one
    seed after the other in the same workers, and the trial then reports each seed's final metrics and their means
    (see `orchestrator.repeats`).
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestrator.repeats import run_seeds
    from trainables.config import TrialConfig
    from trainables.engine.trainer import build_trainer, fit_to_end
    from trainables.engine.worker import NonFiniteLossError, WorkerJob

    trial_id = tune.get_context().get_trial_id()
    out = Path(trials_dir) / trial_id

    def fit(point: dict, job_seeds: list[int], forward_reports: bool) -> dict:
        cfg = TrialConfig.model_validate(apply(base, point))
        job = WorkerJob(trial=cfg.model_dump(mode="json", by_alias=True), task="unlearn", model_dir=target_dir,
                        output_dir=str(out), oracle_reference=oracle_reference, seeds=job_seeds)
        return fit_to_end(build_trainer(job, cfg, storage_path=str(out / "ray"), name=f"trial-{trial_id}",
                                        callbacks=[TuneReportCallback()] if forward_reports else []), out)

    try:
        if not seeds or len(seeds) == 1:
            fit(params if not seeds else {**params, "train.seed": seeds[0]}, [], forward_reports=True)
        else:
            run_seeds(seeds, out, lambda pending: fit(params, pending, forward_reports=False), tune.report)
    except NonFiniteLossError as diverged:
        # An outcome of the sampled point, not a fault: reported (Optuna FAIL, MLflow FAILED with the reason)
        # instead of raised, so Tune does not retry a trial that would diverge again.
        tune.report({DIVERGED: 1, DIVERGENCE_REASON: str(diverged)})


@dataclass
class SweepOutcome:
    """What a finished (or stopped) sweep produced."""

    paths: SweepPaths
    tracking_uri: str
    summary: tracking.ParetoSummary
    num_errors: int  # trials that crashed more often than search.max_trial_failures allows
    num_diverged: int  # trials whose loss became NaN/inf (Optuna FAIL, MLflow FAILED)
    interrupted: bool


def run_sweep(checked: ValidatedSweep, address: str | None = None, resume: bool = False,
              log=print) -> SweepOutcome:
    """Run (or resume) the sweep `checked` describes on the cluster at `address` (or a local one)."""
    from orchestrator.cluster import check_resources_before_start, ray_cluster, warn_if_trial_does_not_fit
    from orchestrator.prepare import prepare
    from orchestrator.references import load_references
    from trainables.data.loading import benchmark_fingerprint

    cfg = checked.cfg
    paths = sweep_paths(cfg)
    uri = cfg.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.default_tracking_uri(Path.cwd())
    tracking.check_tracking(uri)
    check_resources_before_start(cfg.base.train, address)
    # Saved with absolute locations, so `resume` and `report` work from any directory.
    cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"dir": str(paths.root.parent)}),
                                 "mlflow": cfg.mlflow.model_copy(update={"tracking_uri": uri})})
    with ray_cluster(address):
        warn_if_trial_does_not_fit(cfg.base.train, log)
        _claim_sweep_dir(paths, cfg, resume)
        prepared = prepare(cfg.base, log=log, bench=checked.bench)
        references = load_references(cfg.base, prepared, checked.bench, log=log)
        names = [m for m, _ in cfg.objective_modes]
        markers = references.markers(names)
        log(f"sweep {cfg.name}: reference points {references.describe(names)}")
        record = collect(benchmark_fingerprint(checked.bench))
        runs = tracking.open_sweep(uri, cfg.mlflow.experiment or cfg.name, cfg.name,
                                   {**cfg.model_dump(mode="json", by_alias=True), **record.params(cfg.base)})
        tracking.log_metrics(runs, runs.parent_run_id, references.metrics())
        tracking.set_tags(runs, runs.parent_run_id, references.tags())
        if resume:
            _drop_lost_trials(paths, cfg, runs, log)
            tracking.close_zombies(runs)
        write_json_atomic(paths.state_file, {"parent_run_id": runs.parent_run_id,
                                             "experiment_id": runs.experiment_id, "tracking_uri": uri,
                                             "target_dir": prepared.target_dir})
        tuner = _tuner(checked, paths, prepared, runs, resume, record, markers)
        log(f"sweep {cfg.name}: {checked.num_trials} trials of {checked.method_text}, {cfg.search.max_concurrent} "
            f"at a time, {checked.search_text}, objectives {cfg.objective_modes}")
        results = tuner.fit()
    summary = tracking.update_pareto(runs, cfg.objective_modes, markers=markers)
    # Stopped before every trial ended (Ctrl-C): the parent run must not look complete; `resume` reopens it.
    interrupted = results.num_terminated + results.num_errors < checked.num_trials
    # Trials that crashed beyond their retries make the sweep FAILED; diverged trials are search outcomes.
    tracking.close_sweep(runs, "KILLED" if interrupted else "FAILED" if results.num_errors else "FINISHED")
    diverged = sum(1 for r in results if r.metrics and r.metrics.get(DIVERGED))
    return SweepOutcome(paths, uri, summary, results.num_errors, diverged, interrupted)


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


def _tuner(checked: ValidatedSweep, paths: SweepPaths, prepared, runs: tracking.SweepRuns, resume: bool,
           record: RunRecord, markers: list[Marker]):
    """Tune's experiment: a new one, or the saved one restored (which keeps its callback, record and markers)."""
    from ray import tune

    from orchestrator.search import make_searcher, sweep_study_name

    # Objectives arrive with the trial's evaluation (its last report, or every `eval.every` epochs); per-epoch
    # training reports do not carry them, which Tune's strict check would reject. The searcher itself reads only
    # the final result (see `orchestrator.search.trial_outcome`).
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    from orchestrator.tune_tracking import SweepTracker

    cfg = checked.cfg
    objectives = cfg.objective_modes
    base = cfg.base.model_dump(mode="json", by_alias=True)
    seeds = checked.space.repeat_seeds
    trainable = tune.with_parameters(
        trial_driver, base=base, target_dir=prepared.target_dir,
        oracle_reference=prepared.oracle_reference, trials_dir=str(paths.trials), seeds=seeds,
    )
    # The trial driver only waits on its Ray Train job, whose workers hold the CPUs/GPUs in their own placement
    # group. Tune refuses an all-zero request, so the driver asks for one byte of memory: it then blocks no CPU,
    # and 2 one-CPU trials run side by side on a 2-core laptop (with {"CPU": 1} only one would fit).
    trainable = tune.with_resources(trainable, {"memory": 1})
    if resume:
        return tune.Tuner.restore(str(paths.tune), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False)
    scheduler = None
    if cfg.search.asha:
        scheduler = tune.schedulers.ASHAScheduler(metric=objectives[0][0], mode=objectives[0][1],
                                                  time_attr="epoch", max_t=cfg.base.train.epochs, grace_period=1)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(checked.space, checked.num_layers, objectives, cfg.search, checked.num_trials,
                                     study_name=sweep_study_name(cfg.name), storage_url=paths.optuna_url(cfg)),
            scheduler=scheduler,
            num_samples=checked.num_trials,
            max_concurrent_trials=cfg.search.max_concurrent,
            # A finished trial's actor runs the next one: its process start and imports are paid once per slot.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=TUNE_NAME,
            storage_path=str(paths.root),
            callbacks=[SweepTracker(runs, objectives, functools.partial(describe_trial, base=base, seeds=seeds),
                                    functools.partial(trial_params, record, base), markers)],
            failure_config=tune.FailureConfig(max_failures=cfg.search.max_trial_failures),
            verbose=1,
        ),
    )


def _claim_sweep_dir(paths: SweepPaths, cfg: SweepConfig, resume: bool) -> None:
    """A new sweep needs a new directory; a resume needs the old one and the same sweep file."""
    if resume:
        if not paths.tune.is_dir():
            raise SweepError(f"{paths.root} holds no Tune experiment to resume")
        return
    if paths.sweep_file.exists():
        raise SweepError(f"sweep directory {paths.root} exists: `clreg-sweep resume {paths.root}` continues it, "
                         f"or choose another name (--set name=...)")
    paths.root.mkdir(parents=True, exist_ok=True)
    if not os.access(paths.root, os.W_OK):
        raise SweepError(f"storage.dir {paths.root.parent} is not writable")
    write_bytes_atomic(paths.sweep_file,
                       yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False).encode())


def load_sweep_dir(root: str | Path) -> SweepConfig:
    """The resolved sweep file a sweep directory was started with."""
    from orchestrator.config_files import load_config

    f = Path(root) / SWEEP_FILE
    if not f.is_file():
        raise SweepError(f"{root} is not a sweep directory (no {SWEEP_FILE})")
    return load_config(SweepConfig, f)
