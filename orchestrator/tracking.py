"""MLflow bookkeeping of a sweep: one parent run per sweep, one child run per trial, the Pareto front on the parent.

Runs on the sweep driver only. A SQLite store takes one writer at a time, and the driver already sees every
trial result, so it is the one process that writes; trial workers never talk to MLflow.

Every call goes through `MlflowClient` (no `mlflow.start_run` global state), and every run is looked up by its
tags before it is created. Ray's `MLflowLoggerCallback` keeps no state across `Tuner.restore`, so a resumed sweep
would get duplicate runs; here a restarted driver finds its parent by `clreg.sweep` and each trial's child by
`clreg.trial_id`, and carries on logging into them.

Typical use on the driver::

    check_tracking(uri)
    runs = open_sweep(uri, experiment, sweep_name, sweep_params)
    close_zombies(runs)                       # children a killed driver left RUNNING
    run_id = child_run(runs, trial_id, params, tags)
    log_metrics(runs, run_id, result, step)
    finish_child(runs, run_id, "FINISHED", None)
    summary = update_pareto(runs, [("forget_quality", "max"), ("model_utility", "max")])
    close_sweep(runs, "FINISHED")
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS, MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH
from sqlalchemy.engine import make_url

from orchestrator.candidates import TAG_PARETO_EPOCHS, Candidate, epochs_text, run_candidates
from orchestrator.pareto import FrontSummary, maximize_flags, summarize
from orchestrator.pareto_artifacts import Marker, pareto_figure, pareto_html, trial_label
from orchestrator.run_record import PREFIX as RECORD_PREFIX
from orchestrator.trial_record import TrialRecord, read_record, write_record
from orchestrator.writable import sqlite_problem, write_problem
from trainables.report_keys import TRIAL_RECORD_FILE

_log = logging.getLogger(__name__)

TAG_SWEEP = "clreg.sweep"
TAG_ROLE = "clreg.role"
TAG_TRIAL = "clreg.trial_id"
TAG_FAILURE = "clreg.failure_reason"
TAG_LOST = "clreg.lost"
TAG_PARETO = "pareto"
FAILURE_REASON_CHARS = 500

# A store that is down for up to about 2 minutes (a restarting server, a failover) is waited for: doubling delays
# from 0.5 s, at most 30 s apart, 10 tries in all (about 120 s of waiting).
RETRIES = 10
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
HEALTH_TIMEOUT_S = 5.0
# Commands that only read a finished sweep (`report`) report a store that stays down instead of waiting for it.
READ_RETRIES = 3

# Keys that may hold credentials (MLFLOW_TRACKING_TOKEN, AWS_SECRET_ACCESS_KEY, db passwords, API keys).
# Params are visible to anyone who can read the experiment and cannot be deleted, so a credential logged once
# stays exposed; such keys are dropped whole. "key" also drops harmless names (e.g. "monkey"): acceptable.
_SECRET_KEY = re.compile(r"token|secret|password|key", re.IGNORECASE)
# user:password@ inside URIs (optuna_url = postgresql://user:pw@host/db): the value is logged, the password not.
_URI_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")

# Error codes that no retry can fix: the request itself is wrong (bad key, unknown run, rejected credentials).
_PERMANENT_ERRORS = {
    databricks_pb2.ErrorCode.Name(code)
    for code in (
        databricks_pb2.INVALID_PARAMETER_VALUE,
        databricks_pb2.RESOURCE_DOES_NOT_EXIST,
        databricks_pb2.RESOURCE_ALREADY_EXISTS,
        databricks_pb2.INVALID_STATE,
        databricks_pb2.BAD_REQUEST,
        databricks_pb2.MALFORMED_REQUEST,
        databricks_pb2.ENDPOINT_NOT_FOUND,
        databricks_pb2.PERMISSION_DENIED,
        databricks_pb2.UNAUTHENTICATED,
    )
}

Status = Literal["FINISHED", "FAILED", "KILLED"]
T = TypeVar("T")


class TrackingError(RuntimeError):
    """The MLflow store cannot be used, or refused a write after all retries (the message names the URI)."""


@dataclass(frozen=True)
class SweepRuns:
    """Where a sweep logs: enough to reach the parent run again from any function on the driver."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


@dataclass
class ParetoSummary:
    """The front after `update_pareto`, for printing.

    `front` has one dict per front member, best first on the first objective: label, trial_id, run_id, one key
    per objective metric and `params.<name>` per trial parameter (the columns of `pareto/front.json`).
    """

    front: list[dict[str, Any]]
    hypervolume: float
    num_trials: int  # finished trials that report every objective and meet the constraints
    reference: list[float] = field(default_factory=list)
    num_infeasible: int = 0  # finished trials (candidates) that report every objective but miss a constraint
    num_candidates: int = 0  # the feasible points: num_trials, or their evaluated epochs with candidates
    points: list[list[float]] = field(default_factory=list)  # the feasible points' objective values


def default_tracking_uri(workdir: Path) -> str:
    """The embedded store: `mlflow.db` in `workdir`, as an absolute SQLite URI so a later `cd` cannot move it."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def check_tracking(uri: str, create: bool = True) -> None:
    """Fail in seconds, before any trial starts, when the store at `uri` cannot be opened or written.

    An HTTP server is first asked for `/health` with a short timeout: MLflow's own client retries for minutes
    before it gives up on an unreachable host. A SQLite file must be writable, with its directory (SQLite writes
    its journal next to the file), and be an SQLite database if it exists; a file store's folder must be writable.
    With `create` the store is then opened, which makes a local one; without it (`validate`, and a sweep before it
    writes anything) nothing is created.

    Raises:
        TrackingError: naming the URI (password removed) and the cause.
    """
    try:
        if uri.startswith(("http://", "https://")):
            requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S).raise_for_status()
        if uri.startswith("sqlite:"):
            _check_sqlite_writable(uri)
        elif (folder := local_store_path(uri)) is not None and (problem := write_problem(folder)):
            raise TrackingError(problem)
        if create:
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:
        cause = redact(first_line(error))
        raise TrackingError(f"MLflow tracking store {redact(uri)} cannot be used: {cause}") from error


def open_sweep(uri: str, experiment_name: str, sweep_name: str, sweep_params: Mapping[str, Any]) -> SweepRuns:
    """Get or create the experiment and the sweep's parent run, and mark the parent RUNNING.

    Idempotent: a second call (a resumed sweep) returns the same parent. Parameters already logged keep their
    first value (MLflow params are immutable); new keys are added.

    Args:
        uri: tracking URI (see `default_tracking_uri`).
        experiment_name: created when missing; a SQLite store keeps its artifacts in `mlartifacts/` next to the
            database file (MLflow's default, `./mlruns`, depends on the current directory).
        sweep_name: the parent's run name and `clreg.sweep` tag.
        sweep_params: sweep settings, nested dicts allowed; logged flattened (`search.sampler`), credentials
            dropped (see `loggable`).
    """
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, uri, experiment_name)
    found = _search(
        client, experiment_id, f"tags.`{TAG_SWEEP}` = {_quote(sweep_name)} AND tags.`{TAG_ROLE}` = 'parent'"
    )
    if found:
        parent = found[0]
        client.update_run(parent.info.run_id, status="RUNNING")
    else:
        parent = client.create_run(experiment_id, run_name=sweep_name, tags={TAG_SWEEP: sweep_name, TAG_ROLE: "parent"})
    _log_new_params(client, parent, loggable(sweep_params))
    return SweepRuns(uri, experiment_id, parent.info.run_id)


def child_run(runs: SweepRuns, trial_id: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
    """Run id of the trial's child run, created on first use; call when the trial starts or resumes.

    Never duplicates: the child is found by `clreg.trial_id` under this parent. Params are logged on creation;
    on resume only keys not yet logged are added (MLflow params are immutable). Tags are updated, and a child
    that a stopped driver left KILLED is marked RUNNING again.
    """
    client = MlflowClient(runs.tracking_uri)
    run = _find_child(client, runs, trial_id)
    reserved = {MLFLOW_PARENT_RUN_ID: runs.parent_run_id, TAG_TRIAL: trial_id, TAG_ROLE: "child"}
    all_tags = {**loggable(tags), **reserved}
    if run is None:
        run = client.create_run(runs.experiment_id, run_name=trial_id, tags=all_tags)
    else:
        changed = [RunTag(k, v) for k, v in all_tags.items() if run.data.tags.get(k) != v]
        _batches(client, run.info.run_id, tags=changed)
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
    _log_new_params(client, run, loggable(params))
    return run.info.run_id


def log_metrics(runs: SweepRuns, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log the numeric, finite values of `metrics` (e.g. a Tune result) in batches, retrying transient errors.

    None, NaN, infinities and non-numbers (strings, nested dicts of a Tune result) are skipped: MLflow stores
    floats only, and a NaN would break every plot of the metric. Booleans are logged as 0/1.

    Raises:
        TrackingError: when the store refuses the batch (bad key, unknown run) or is still failing after
            `RETRIES` tries with exponential backoff; a metric is never dropped silently.
    """
    values = {k: float(v) for k, v in metrics.items() if _is_finite_number(v)}
    timestamp = int(time.time() * 1000)
    batch = [Metric(k, v, timestamp, step or 0) for k, v in values.items()]
    _batches(MlflowClient(runs.tracking_uri), run_id, metrics=batch)


def set_tags(runs: SweepRuns, run_id: str, tags: Mapping[str, str]) -> None:
    """Set string tags on a run (credentials removed, values cut to MLflow's limit), retrying transient errors."""
    _batches(MlflowClient(runs.tracking_uri), run_id, tags=[RunTag(k, redact(v)[:5000]) for k, v in tags.items()])


def finish_child(runs: SweepRuns, run_id: str, status: Status, reason: str | None = None) -> None:
    """End a child run; a FAILED or KILLED one gets `reason` (first 500 characters) as `clreg.failure_reason`."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"status must be FINISHED, FAILED or KILLED, got {status!r}")
    client = MlflowClient(runs.tracking_uri)
    if reason and status != "FINISHED":
        tag = RunTag(TAG_FAILURE, redact(reason)[:FAILURE_REASON_CHARS])
        _batches(client, run_id, tags=[tag])
    _terminate(client, run_id, status)


def close_zombies(runs: SweepRuns) -> list[str]:
    """Mark children still RUNNING as KILLED and return their run ids.

    Call on resume (the previous driver died without ending them) and when the sweep ends; a resumed trial's
    `child_run` marks its run RUNNING again.
    """
    client = MlflowClient(runs.tracking_uri)
    zombies = sweep_children(client, runs.experiment_id, runs.parent_run_id, status="RUNNING")
    for run in zombies:
        finish_child(runs, run.info.run_id, "KILLED", "the sweep driver stopped while the trial was running")
    return [run.info.run_id for run in zombies]


def drop_lost_children(runs: SweepRuns, known_trial_ids: set[str], reason: str) -> list[str]:
    """Delete the children of trials that the resumed Tune experiment does not know, and return their run ids.

    Tune saves its experiment state every few seconds; a trial started after the last save is gone when a killed
    driver's sweep is restored, and Tune samples a new trial in its place. The old trial's child would be counted
    beside its replacement, so it is ended KILLED, tagged `clreg.lost` with `reason`, and moved to MLflow's
    trash (`mlflow gc` purges it; the dashboard shows it under "Deleted"). A child that already FINISHED or FAILED
    (a trial that started and ended between two saves) is a real result and stays, as its Optuna trial does.
    """
    client = MlflowClient(runs.tracking_uri)
    lost = [r for r in sweep_children(client, runs.experiment_id, runs.parent_run_id)
            if r.data.tags.get(TAG_TRIAL) not in known_trial_ids and r.info.status in ("RUNNING", "KILLED")]
    for run in lost:
        run_id = run.info.run_id
        _batches(client, run_id, tags=[RunTag(TAG_LOST, reason[:FAILURE_REASON_CHARS])])
        if run.info.status == "RUNNING":
            finish_child(runs, run_id, "KILLED", reason)
        _retry(f"delete run {run_id}", client.tracking_uri, lambda run_id=run_id: client.delete_run(run_id))
    return [r.info.run_id for r in lost]


def close_sweep(runs: SweepRuns, status: Status = "FINISHED") -> None:
    """End the parent run, after closing children left RUNNING (they cannot outlive the sweep)."""
    close_zombies(runs)
    _terminate(MlflowClient(runs.tracking_uri), runs.parent_run_id, status)


def update_pareto(
    runs: SweepRuns,
    objectives: Sequence[tuple[str, str]],
    reference: Sequence[float] | None = None,
    label: Callable[[Mapping[str, str], str], str] = trial_label,
    markers: Sequence[Marker] = (),
    epochs: bool = False,
    cache: dict | None = None,
) -> ParetoSummary:
    """Recompute the Pareto front over the FINISHED children that report every objective, and publish it.

    Children tagged `feasible=false` (they miss a `search.constraints` bound, see `orchestrator.constraints`) are
    never on the front and add no hypervolume; the front picture shows them greyed. Each such child is tagged
    `pareto=true|false` (only when the tag changes). The parent gets the metrics `pareto/hypervolume` and
    `pareto/num_trials` (the feasible children) at step = number of those children, and the artifacts
    `pareto/front.json` (one row per front member: label, trial id, run id, objective values, `params.*`),
    `pareto/front.png` and `pareto/front.html`. FAILED, KILLED and RUNNING children are ignored.

    With `epochs` (`search.candidates: epochs`, see `orchestrator.candidates`) the points are the children's
    evaluated epochs: a child is `pareto=true` when one of its epochs is on the front, tagged `pareto_epochs` with
    them; front.json gets an `epoch` column and the parent `pareto/num_candidates`.

    Args:
        runs: the sweep.
        objectives: (metric, "max" | "min") pairs, as in the sweep file.
        reference: hypervolume reference point, one value per objective. Default: `pareto.default_reference` of
            the trials' points, which moves as trials arrive, so pass a fixed reference to compare hypervolumes
            across sweeps.
        label: names a trial in plots from its params (strings) and trial id.
        markers: reference models (target, oracle) drawn on `front.png` and `front.html` beside the trials; they
            are not runs of the sweep and change neither the front nor the hypervolume.
        epochs: every evaluated epoch is a candidate, not only the final metrics.
        cache: run id -> its epochs' values, kept by the caller across calls (a finished run's history does not
            change).

    Raises:
        ValueError: for a mode other than "max"/"min" or a reference of the wrong length.
    """
    names = [metric for metric, _ in objectives]
    client = MlflowClient(runs.tracking_uri)
    front = sweep_front(client, runs.experiment_id, runs.parent_run_id, objectives, reference, epochs, cache)
    points, maximize = front.summary.points, maximize_flags(objectives)
    _tag_pareto(client, front, epochs)
    scored = [front.candidates[i] for i in front.summary.scored]
    labels = [_candidate_label(label, c) for c in scored]
    order = sorted(front.summary.front, key=lambda i: -points[i][0] if maximize[0] else points[i][0])
    rows = [_front_row(scored[i], labels[i], names) for i in order]
    num_trials = len({c.run.info.run_id for c in scored})
    log_metrics(runs, runs.parent_run_id, {"pareto/hypervolume": front.summary.hypervolume,
                                           "pareto/num_trials": num_trials,
                                           **({"pareto/num_candidates": len(scored)} if epochs else {})}, num_trials)
    _log_pareto_artifacts(client, runs, rows, points, order, labels, names, maximize, markers,
                          front.summary.infeasible_points)
    return ParetoSummary(rows, front.summary.hypervolume, num_trials, front.summary.reference,
                         len(front.summary.infeasible), num_candidates=len(scored),
                         points=[list(p) for p in points])


@dataclass(frozen=True)
class SweepFront:
    """The candidates of a sweep's FINISHED children and their front (`summarize` over the candidates' metrics)."""

    candidates: list[Candidate]
    summary: FrontSummary

    def on_front(self) -> list[Candidate]:
        return [self.candidates[self.summary.scored[i]] for i in self.summary.front]


def sweep_front(client: MlflowClient, experiment_id: str, parent_run_id: str, objectives: Sequence[tuple[str, str]],
                reference: Sequence[float] | None = None, epochs: bool = False, cache: dict | None = None
                ) -> SweepFront:
    """The front of a sweep's FINISHED children as the store holds it now, read only (`update_pareto` publishes
    it; `export` and the report read it)."""
    names = [metric for metric, _ in objectives]
    finished = sweep_children(client, experiment_id, parent_run_id, status="FINISHED")
    candidates = [c for run in finished for c in run_candidates(client, run, names, epochs, cache)]
    summary = summarize([c.metrics for c in candidates], objectives, reference, [c.feasible for c in candidates])
    return SweepFront(candidates, summary)


def sweep_children(client: MlflowClient | str, experiment_id: str, parent_run_id: str, status: str | None = None,
                   tries: int = RETRIES) -> list[Run]:
    """The sweep's child runs (active ones, optionally of one `status`), oldest first, read page by page.

    The one reader of a sweep's trials in MLflow (the tracker, `report`, the studies): every page is retried on
    transient errors (`tries` tries; `READ_RETRIES` for a command that only reads), and no page limit cuts a large
    sweep short.

    Raises:
        TrackingError: the store refused the search or kept failing.
    """
    client = MlflowClient(client) if isinstance(client, str) else client
    where = f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(parent_run_id)}"
    if status is not None:
        where += f" AND attributes.status = {_quote(status)}"
    return _search(client, experiment_id, where, tries=tries)


def log_trial_record(runs: SweepRuns, run_id: str, record: TrialRecord) -> None:
    """The trial's record as the artifact `trial.json` of its run (replacing an earlier copy on resume)."""
    client = MlflowClient(runs.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        write_record(record, tmp)
        _retry(f"upload {TRIAL_RECORD_FILE} to run {run_id}", runs.tracking_uri,
               lambda: client.log_artifact(run_id, str(Path(tmp) / TRIAL_RECORD_FILE)))


def logged_trial_record(uri: str, run_id: str, tries: int = READ_RETRIES) -> TrialRecord | None:
    """The record logged to a trial's run (`log_trial_record`), None when the run has none."""
    client = MlflowClient(uri)
    listed = _retry(f"list the artifacts of run {run_id}", uri, lambda: client.list_artifacts(run_id), tries=tries)
    if TRIAL_RECORD_FILE not in {a.path for a in listed}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        _retry(f"download {TRIAL_RECORD_FILE} of run {run_id}", uri,
               lambda: client.download_artifacts(run_id, TRIAL_RECORD_FILE, tmp), tries=tries)
        return read_record(tmp)


def loggable(values: Mapping[str, Any]) -> dict[str, str]:
    """`values` flattened to dotted keys and stringified, without credentials.

    Keys containing token/secret/password/key (any case) are dropped and `user:password@` in URIs is masked:
    MLflow params cannot be deleted, and whoever can read the experiment can read them.
    """
    return {k: redact(str(v)) for k, v in _flatten(values).items() if not _SECRET_KEY.search(k)}


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, at most 300 characters (its type's name when it has none): the cause
    a one-line refusal shows."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def redact(text: str) -> str:
    """`text` with the password of any `scheme://user:password@host` replaced by `***`."""
    return _URI_PASSWORD.sub(r"\1:***@", text)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_sqlite_writable(uri: str) -> None:
    """SQLite opens a read-only file without complaint and fails on the first write: check before that."""
    database = make_url(uri).database
    if not database or database == ":memory:":
        return
    problem = sqlite_problem(Path(database))
    if problem:
        raise TrackingError(problem)


def _experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} in {redact(uri)} is deleted: restore it (`mlflow experiments restore`) "
            "or choose another experiment name"
        )
    return experiment.experiment_id


def _artifact_location(uri: str, experiment_name: str) -> str | None:
    """`mlartifacts/<experiment>` next to a SQLite file; None (the server's choice) for other stores."""
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    if not database or database == ":memory:":
        return None
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", experiment_name)
    return (Path(database).resolve().parent / "mlartifacts" / safe_name).as_uri()


def _search(client: MlflowClient, experiment_id: str, filter_string: str, tries: int = RETRIES) -> list[Run]:
    """All active runs matching the filter, oldest first, across result pages, each page retried."""
    found: list[Run] = []
    token = None
    while True:
        page = _retry(f"search the runs of experiment {experiment_id}", client.tracking_uri,
                      lambda token=token: client.search_runs([experiment_id], filter_string, max_results=1000,
                                                             order_by=["attributes.start_time ASC"],
                                                             page_token=token),
                      tries=tries)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _find_child(client: MlflowClient, runs: SweepRuns, trial_id: str) -> Run | None:
    found = _search(client, runs.experiment_id, f"{_child_filter(runs)} AND tags.`{TAG_TRIAL}` = {_quote(trial_id)}")
    return found[0] if found else None


def _child_filter(runs: SweepRuns) -> str:
    return f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(runs.parent_run_id)}"


def _quote(value: str) -> str:
    """A string literal for an MLflow filter; MLflow's filter grammar has no escape for quotes."""
    if "'" in value:
        raise ValueError(f"{value!r}: names used to find MLflow runs may not contain a single quote")
    return f"'{value}'"


def _log_new_params(client: MlflowClient, run: Run, params: Mapping[str, str]) -> None:
    """Log the params the run does not have yet; a key logged before keeps its value (MLflow forbids changes)."""
    logged = run.data.params
    for key in sorted(k for k in params if k in logged and logged[k] != params[k]):
        _log.warning("run %s keeps %s=%r; ignoring the new value %r", run.info.run_id, key, logged[key], params[key])
    new = [Param(k, v) for k, v in params.items() if k not in logged]
    _batches(client, run.info.run_id, params=new)


def _batches(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
) -> None:
    """Synchronous `log_batch` calls within MLflow's per-request limits, each retried on transient errors."""
    limits = {"metrics": MAX_METRICS_PER_BATCH, "params": MAX_PARAMS_TAGS_PER_BATCH, "tags": MAX_PARAMS_TAGS_PER_BATCH}
    for kind, items in (("metrics", metrics), ("params", params), ("tags", tags)):
        for start in range(0, len(items), limits[kind]):
            chunk = {kind: items[start : start + limits[kind]]}
            what = f"log {len(chunk[kind])} {kind} to run {run_id}"
            _retry(what, client.tracking_uri, lambda: client.log_batch(run_id, **chunk, synchronous=True))


def _terminate(client: MlflowClient, run_id: str, status: Status) -> None:
    _retry(f"end run {run_id}", client.tracking_uri, lambda: client.set_terminated(run_id, status))


def _retry(what: str, uri: str, call: Callable[[], T], tries: int = RETRIES, first_delay: float = FIRST_DELAY_S) -> T:
    """`call()`, retried with doubling delays on errors that may pass (server busy, database locked, network).

    Raises:
        TrackingError: at once for an error no retry can fix, or with the last error after `tries` attempts.
    """
    for attempt in range(1, tries + 1):
        try:
            return call()
        except (MlflowException, requests.RequestException, OSError) as error:
            if isinstance(error, MlflowException) and error.error_code in _PERMANENT_ERRORS:
                raise TrackingError(f"MLflow at {redact(uri)} refused to {what}: {redact(str(error))}") from error
            if attempt == tries:
                raise TrackingError(f"could not {what} at {redact(uri)} after {tries} tries: "
                                    f"{redact(str(error))}") from error
            delay = min(first_delay * 2 ** (attempt - 1), MAX_DELAY_S)
            _log.warning("could not %s (%s); retrying in %.1f s", what, redact(str(error)), delay)
            time.sleep(delay)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _tag_pareto(client: MlflowClient, front: SweepFront, epochs: bool) -> None:
    """`pareto=true|false` on every child with a measured candidate (and `pareto_epochs`), set where it changed."""
    measured = {front.candidates[i].run.info.run_id: front.candidates[i].run
                for i in (*front.summary.scored, *front.summary.infeasible)}
    on_front: dict[str, list[int]] = {}
    for c in front.on_front():
        on_front.setdefault(c.run.info.run_id, []).append(c.epoch)
    for run_id, run in measured.items():
        tags = {TAG_PARETO: "true" if run_id in on_front else "false"}
        if epochs:
            tags[TAG_PARETO_EPOCHS] = epochs_text(on_front.get(run_id, []))
        changed = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
        if changed:
            _batches(client, run_id, tags=changed)


def _candidate_label(label: Callable[[Mapping[str, str], str], str], c: Candidate) -> str:
    name = label(c.run.data.params, c.run.data.tags.get(TAG_TRIAL, c.run.info.run_id))
    return name if c.epoch is None else f"{name} @ epoch {c.epoch}"


def _front_row(c: Candidate, label: str, names: Sequence[str]) -> dict[str, Any]:
    run = c.run
    row: dict[str, Any] = {"label": label, "trial_id": run.data.tags.get(TAG_TRIAL), "run_id": run.info.run_id}
    if c.epoch is not None:
        row["epoch"] = c.epoch
    row.update({name: c.metrics[name] for name in names})
    # The trial's own params: its run record (`record.*`: versions, commit, data) is on its run page.
    row.update({f"params.{k}": v for k, v in sorted(run.data.params.items()) if not k.startswith(RECORD_PREFIX)})
    return row


def _log_pareto_artifacts(
    client: MlflowClient,
    runs: SweepRuns,
    rows: list[dict[str, Any]],
    points: list[list[float]],
    front: list[int],
    labels: list[str],
    names: list[str],
    maximize: list[bool],
    markers: Sequence[Marker],
    infeasible: list[list[float]],
) -> None:
    """Write front.json/png/html and upload them to the parent's `pareto/`, replacing the previous ones.

    The table is written as `client.log_table` writes it (pandas "split" JSON, registered in the
    `mlflow.loggedArtifacts` tag so the UI shows it as a table), because `log_table` appends to an existing
    file and the front would pile up stale rows after each trial.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pd.DataFrame(rows).to_json(folder / "front.json", orient="split", index=False, date_format="iso")
        figure = pareto_figure(points, front, labels, names, maximize, markers=markers, infeasible=infeasible)
        figure.savefig(folder / "front.png", bbox_inches="tight")
        page = pareto_html(points, front, labels, names, maximize, markers, infeasible)
        (folder / "front.html").write_text(page, encoding="utf-8")
        log_artifacts(runs, tmp, "pareto")
    _register_table(client, runs.parent_run_id, "pareto/front.json")


def log_artifacts(runs: SweepRuns, local_dir: str | Path, artifact_path: str, tries: int = RETRIES) -> None:
    """Upload the files of `local_dir` to the parent run's `artifact_path`, retrying transient errors `tries` times.

    Files of the same name are replaced; files already there that `local_dir` lacks are kept (MLflow's client has
    no delete), so publish a folder's full set of files each time.
    """
    client = MlflowClient(runs.tracking_uri)
    _retry(
        f"upload {artifact_path}/ to run {runs.parent_run_id}",
        runs.tracking_uri,
        lambda: client.log_artifacts(runs.parent_run_id, str(local_dir), artifact_path),
        tries=tries,
    )


def read(what: str, uri: str, call: Callable[[], T]) -> T:
    """`call()` on the store at `uri` for a command that only reads it, with `READ_RETRIES` tries.

    Raises:
        TrackingError: naming `what` and the URI (password removed), at once for an error no retry can fix.
    """
    return _retry(what, uri, call, tries=READ_RETRIES)


def check_store_readable(uri: str) -> None:
    """Before reading a sweep's store: fail in seconds, creating nothing.

    MLflow creates an empty store where a local one is missing (a new `mlflow.db`), so a SQLite file or file store
    must exist; a server must answer `/health` within `HEALTH_TIMEOUT_S` (MLflow's client retries an unreachable
    host for minutes).

    Raises:
        TrackingError: naming the store (password removed) and the cause.
    """
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(f"MLflow tracking store {path} does not exist (the sweep logged there; was it moved "
                            "or deleted?)")
    if uri.startswith(("http://", "https://")):
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S).raise_for_status()
        except requests.RequestException as error:
            raise TrackingError(f"MLflow tracking server {redact(uri)} does not answer: "
                                f"{redact(str(error))}") from None


def local_store_path(uri: str) -> Path | None:
    """The file or directory of a SQLite or file store; None for servers and other databases."""
    if uri.startswith("sqlite:"):
        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" else None
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    if "://" not in uri:
        return Path(uri)
    return None


def _register_table(client: MlflowClient, run_id: str, artifact_file: str) -> None:
    logged = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        _batches(client, run_id, tags=[RunTag(MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))])
