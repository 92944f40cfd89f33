"""MLflow bookkeeping against a real SQLite store: idempotent runs, metric filtering, secrets, Pareto publishing.

One store per module (creating the database takes seconds); each test works in its own experiment.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.pareto_artifacts import Marker
from orchestrator.tracking import (
    SweepRuns,
    TrackingError,
    _retry,
    check_tracking,
    child_run,
    close_sweep,
    close_zombies,
    default_tracking_uri,
    drop_lost_children,
    finish_child,
    log_metrics,
    open_sweep,
    update_pareto,
)

OBJECTIVES = [("forget_quality", "max"), ("loss", "min")]
# (trial id, status, metrics): 8 FINISHED trials with both objectives, a tie on the front (t2/t3), a point
# dominated with a tie in one objective (t7 vs t1), and three children update_pareto must ignore.
TRIALS = [
    ("t0", "FINISHED", {"forget_quality": 0.9, "loss": 0.5}),
    ("t1", "FINISHED", {"forget_quality": 0.5, "loss": 0.1}),
    ("t2", "FINISHED", {"forget_quality": 0.7, "loss": 0.3}),
    ("t3", "FINISHED", {"forget_quality": 0.7, "loss": 0.3}),
    ("t4", "FINISHED", {"forget_quality": 0.6, "loss": 0.4}),
    ("t5", "FINISHED", {"forget_quality": 0.2, "loss": 0.8}),
    ("t6", "FINISHED", {"forget_quality": 0.95, "loss": 0.9}),
    ("t7", "FINISHED", {"forget_quality": 0.4, "loss": 0.1}),
    ("failed", "FAILED", {"forget_quality": 1.0, "loss": 0.0}),
    ("partial", "FINISHED", {"forget_quality": 0.99}),
    ("running", "RUNNING", {"forget_quality": 1.0, "loss": 0.0}),
]


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return default_tracking_uri(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(autouse=True)
def _sync_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


@pytest.fixture
def runs(uri: str, request: pytest.FixtureRequest) -> SweepRuns:
    return open_sweep(uri, request.node.name, "sweep", {"search": {"sampler": "tpe", "num_trials": 8}})


def _children(runs: SweepRuns) -> list:
    flt = f"tags.`mlflow.parentRunId` = '{runs.parent_run_id}'"
    return MlflowClient(runs.tracking_uri).search_runs([runs.experiment_id], flt)


def test_default_uri_is_absolute_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri(Path("work")) == f"sqlite:///{tmp_path.resolve()}/work/mlflow.db"


def test_open_sweep_is_idempotent(uri: str, tmp_path: Path) -> None:
    params = {"search": {"sampler": "tpe", "num_trials": 8}, "name": "s1"}
    first = open_sweep(uri, "idempotent", "s1", params)
    close_sweep(first, "KILLED")
    second = open_sweep(uri, "idempotent", "s1", {**params, "search": {"sampler": "gp", "seed": 3}})

    client = MlflowClient(uri)
    assert second == first
    assert [e.name for e in client.search_experiments(filter_string="name = 'idempotent'")] == ["idempotent"]
    parents = client.search_runs([first.experiment_id], "tags.`clreg.role` = 'parent'")
    assert [p.info.run_id for p in parents] == [first.parent_run_id]
    parent = parents[0]
    assert parent.info.status == "RUNNING"
    assert parent.info.run_name == "s1"
    assert parent.data.params == {"search.sampler": "tpe", "search.num_trials": "8", "name": "s1", "search.seed": "3"}
    artifact_dir = Path(client.get_experiment(first.experiment_id).artifact_location.removeprefix("file://"))
    assert artifact_dir == Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / "idempotent"


def test_child_run_is_idempotent_and_keeps_first_params(runs: SweepRuns) -> None:
    first = child_run(runs, "trial_0001", {"clreg": {"tau": 0.3}, "method.name": "npo"}, {"node": "a"})
    second = child_run(runs, "trial_0001", {"clreg.tau": 0.9, "train.lr": 1e-4}, {"node": "b"})
    other = child_run(runs, "trial_0002", {"clreg.tau": 0.5}, {})

    children = _children(runs)
    assert second == first != other
    assert sorted(c.info.run_id for c in children) == sorted([first, other])
    run = MlflowClient(runs.tracking_uri).get_run(first)
    assert run.info.run_name == "trial_0001"
    assert run.data.params == {"clreg.tau": "0.3", "method.name": "npo", "train.lr": "0.0001"}
    assert run.data.tags["node"] == "b"
    assert run.data.tags["clreg.trial_id"] == "trial_0001"


def test_log_metrics_skips_missing_values_and_keeps_steps(runs: SweepRuns) -> None:
    run_id = child_run(runs, "t", {}, {})
    result = {
        "a": 1.0,
        "none": None,
        "nan": math.nan,
        "inf": math.inf,
        "text": "x",
        "config": {"lr": 0.1},
        "flag": True,
        "np": np.float32(2.5),
        "count": np.int64(7),
    }
    log_metrics(runs, run_id, result, step=1)
    log_metrics(runs, run_id, {"a": 2.0, "nan": math.nan}, step=2)

    client = MlflowClient(runs.tracking_uri)
    assert client.get_run(run_id).data.metrics == {"a": 2.0, "flag": 1.0, "np": 2.5, "count": 7.0}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "a")] == [(1, 1.0), (2, 2.0)]
    assert client.get_metric_history(run_id, "nan") == []


def test_log_metrics_to_unknown_run_fails_at_once(runs: SweepRuns) -> None:
    start = time.monotonic()
    with pytest.raises(TrackingError, match="refused"):
        log_metrics(runs, "0" * 32, {"a": 1.0}, step=0)
    assert time.monotonic() - start < 0.5  # a permanent error is not retried


def test_secrets_never_logged(uri: str) -> None:
    sweep_params = {
        "mlflow": {"token": "s3cr3t", "tracking_uri": "https://user:pa55@mlflow.example"},
        "storage": {"optuna_url": "postgresql://optuna:hunter2@db/optuna"},
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "db_password": "s3cr3t",
        "search.sampler": "tpe",
    }
    runs = open_sweep(uri, "secrets", "s", sweep_params)
    child = child_run(runs, "t", {"mlflow.token": "s3cr3t", "api_key": "s3cr3t", "clreg.tau": 0.3}, {"Token": "s3cr3t"})

    client = MlflowClient(uri)
    parent = client.get_run(runs.parent_run_id).data.params
    assert parent == {
        "mlflow.tracking_uri": "https://user:***@mlflow.example",
        "storage.optuna_url": "postgresql://optuna:***@db/optuna",
        "search.sampler": "tpe",
    }
    run = client.get_run(child).data
    assert run.params == {"clreg.tau": "0.3"}
    assert not any("s3cr3t" in value for value in run.tags.values())


def _populate(runs: SweepRuns) -> dict[str, str]:
    """One child per TRIALS entry, with its metrics and final status; returns trial id -> run id."""
    ids = {}
    for n, (trial_id, status, metrics) in enumerate(TRIALS):
        ids[trial_id] = child_run(runs, trial_id, {"method.name": "npo", "clreg.tau": 0.1 * n, "train.seed": n}, {})
        log_metrics(runs, ids[trial_id], metrics, step=1)
        if status != "RUNNING":
            finish_child(runs, ids[trial_id], status, "boom" if status == "FAILED" else None)
    return ids


def test_update_pareto_tags_front_and_logs_artifacts(runs: SweepRuns, tmp_path: Path) -> None:
    ids = _populate(runs)
    complete = [(t, [m["forget_quality"], m["loss"]]) for t, s, m in TRIALS if s == "FINISHED" and "loss" in m]
    points = [p for _, p in complete]
    expected_front = {complete[i][0] for i in pareto_front(points, (True, False))}
    assert expected_front == {"t0", "t1", "t2", "t3", "t6"}  # the tie t2/t3 stays; t7 loses to t1
    expected_hv = hypervolume(points, (0.0, 0.9), (True, False))

    update_pareto(runs, OBJECTIVES)
    summary = update_pareto(runs, OBJECTIVES)  # twice: the artifacts are replaced, not appended to

    client = MlflowClient(runs.tracking_uri)
    tags = {t: client.get_run(ids[t]).data.tags.get("pareto") for t, _ in complete}
    assert tags == {t: "true" if t in expected_front else "false" for t, _ in complete}
    for ignored in ("failed", "partial", "running"):
        assert "pareto" not in client.get_run(ids[ignored]).data.tags
    assert summary.num_trials == 8
    assert summary.hypervolume == pytest.approx(expected_hv)
    assert summary.reference == [0.0, 0.9]
    assert [row["trial_id"] for row in summary.front] == ["t6", "t0", "t2", "t3", "t1"]  # best forget quality first

    parent = client.get_run(runs.parent_run_id)
    assert parent.data.metrics["pareto/hypervolume"] == pytest.approx(expected_hv)
    assert [(m.step, m.value) for m in client.get_metric_history(runs.parent_run_id, "pareto/num_trials")] == [
        (8, 8.0),
        (8, 8.0),
    ]
    folder = Path(client.download_artifacts(runs.parent_run_id, "pareto", str(tmp_path)))
    assert sorted(p.name for p in folder.iterdir()) == ["front.html", "front.json", "front.png"]
    table = json.loads((folder / "front.json").read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert sorted(r["trial_id"] for r in rows) == sorted(expected_front)
    t0 = next(r for r in rows if r["trial_id"] == "t0")
    assert (t0["forget_quality"], t0["loss"], t0["params.method.name"]) == (0.9, 0.5, "npo")
    assert t0["label"] == "npo τ=0 seed=0"
    assert (folder / "front.png").read_bytes().startswith(b"\x89PNG")
    page = (folder / "front.html").read_text()
    assert "<script" not in page and "src=" not in page and "href=" not in page  # opens offline
    assert page.count("<circle") == 8 and page.count("<title>") == 9  # page title + one tooltip per trial
    assert {"path": "pareto/front.json", "type": "table"} in json.loads(parent.data.tags["mlflow.loggedArtifacts"])


def test_reference_markers_are_drawn_but_change_neither_front_nor_hypervolume(runs: SweepRuns, tmp_path: Path) -> None:
    _populate(runs)
    # Both markers dominate every trial: were they trials, the front would be them alone.
    markers = [Marker("target (before unlearning)", (0.99, 0.01)), Marker("oracle (retain only)", (1.0, 0.05))]
    assert pareto_front([list(m.values) for m in markers] + [[0.9, 0.5]], (True, False)) == [0, 1]
    plain = update_pareto(runs, OBJECTIVES)
    marked = update_pareto(runs, OBJECTIVES, markers=markers)
    assert marked == plain
    assert [row["trial_id"] for row in marked.front] == ["t6", "t0", "t2", "t3", "t1"]

    client = MlflowClient(runs.tracking_uri)
    assert [m.value for m in client.get_metric_history(runs.parent_run_id, "pareto/hypervolume")] == [
        pytest.approx(plain.hypervolume)] * 2
    folder = Path(client.download_artifacts(runs.parent_run_id, "pareto", str(tmp_path)))
    page = (folder / "front.html").read_text()
    assert page.count("<circle") == 8 and page.count("<polygon") == 2
    assert "<title>oracle (retain only)&#10;forget_quality = 1&#10;loss = 0.05</title>" in page
    assert ">target (before unlearning)</text>" in page


def test_finish_child_records_a_short_failure_reason(runs: SweepRuns) -> None:
    run_id = child_run(runs, "t", {}, {})
    finish_child(runs, run_id, "FAILED", "x" * 2000)
    run = MlflowClient(runs.tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["clreg.failure_reason"] == "x" * 500
    with pytest.raises(ValueError, match="FINISHED, FAILED or KILLED"):
        finish_child(runs, run_id, "DONE", None)


def test_close_zombies_kills_running_children_and_resume_revives(runs: SweepRuns) -> None:
    running = [child_run(runs, f"r{n}", {}, {}) for n in range(2)]
    done = child_run(runs, "done", {}, {})
    finish_child(runs, done, "FINISHED", None)

    assert sorted(close_zombies(runs)) == sorted(running)
    client = MlflowClient(runs.tracking_uri)
    assert [client.get_run(r).info.status for r in running] == ["KILLED", "KILLED"]
    assert client.get_run(done).info.status == "FINISHED"
    assert close_zombies(runs) == []

    assert child_run(runs, "r0", {}, {}) == running[0]  # the trial resumes in the same run
    assert client.get_run(running[0]).info.status == "RUNNING"
    close_sweep(runs, "FINISHED")
    assert client.get_run(running[0]).info.status == "KILLED"
    assert client.get_run(runs.parent_run_id).info.status == "FINISHED"


def test_drop_lost_children_retires_only_trials_unknown_to_tune(runs: SweepRuns) -> None:
    known = child_run(runs, "known", {}, {})
    finish_child(runs, known, "FINISHED", None)
    lost = child_run(runs, "lost", {}, {})  # started after Tune's last state save, still RUNNING
    ended = child_run(runs, "ended", {}, {})  # started and ended between two saves: a result, kept
    finish_child(runs, ended, "FINISHED", None)

    assert drop_lost_children(runs, {"known", "pending-not-started"}, "why") == [lost]
    client = MlflowClient(runs.tracking_uri)
    gone = client.get_run(lost)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert gone.data.tags["clreg.lost"] == "why"
    assert sorted(c.info.run_id for c in _children(runs)) == sorted([known, ended])
    assert drop_lost_children(runs, {"known"}, "why") == []


def test_check_tracking_accepts_a_writable_store(uri: str) -> None:
    check_tracking(uri)


def test_check_tracking_rejects_a_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = f"sqlite:///{blocker}/mlflow.db"
    with pytest.raises(TrackingError, match=str(blocker)):
        check_tracking(bad)


def test_check_tracking_rejects_an_unreachable_server() -> None:
    start = time.monotonic()
    with pytest.raises(TrackingError, match="http://127.0.0.1:9"):
        check_tracking("http://127.0.0.1:9")
    assert time.monotonic() - start < 10


def _error(code: int) -> MlflowException:
    return MlflowException("store says no", error_code=code)


def test_retry_outlasts_transient_errors_and_stops_on_permanent_ones() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _error(databricks_pb2.TEMPORARILY_UNAVAILABLE)
        return "ok"

    assert _retry("flake", "sqlite:///x", flaky, tries=5, first_delay=0.001) == "ok"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ConnectionError("down")

    calls.clear()
    with pytest.raises(TrackingError, match="after 4 tries: down"):
        _retry("write", "http://u:pw@host", broken, tries=4, first_delay=0.001)
    assert len(calls) == 4

    def rejected() -> None:
        calls.append(1)
        raise _error(databricks_pb2.INVALID_PARAMETER_VALUE)

    calls.clear()
    with pytest.raises(TrackingError, match=r"http://u:\*\*\*@host refused"):
        _retry("write", "http://u:pw@host", rejected, tries=4, first_delay=0.001)
    assert len(calls) == 1
