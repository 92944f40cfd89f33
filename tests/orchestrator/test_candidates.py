"""Epoch candidates (`orchestrator.candidates`): each evaluated epoch a point, read from a real SQLite MLflow store;
the rule that picks what Optuna is told, through the sweep's searcher on a real SQLite study; model retention."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from orchestrator.candidates import (
    ATTR_EPOCH,
    TAG_INFEASIBLE_EPOCHS,
    TAG_PARETO_EPOCHS,
    candidate_model,
    epoch_values,
    pick,
    prune_epoch_models,
)
from orchestrator.constraints import Bound
from orchestrator.pareto import default_reference, hypervolume, pareto_front
from orchestrator.search import StudySearcher, TrialValue
from orchestrator.tracking import (
    SweepRuns,
    child_run,
    default_tracking_uri,
    finish_child,
    log_metrics,
    open_sweep,
    set_tags,
    update_pareto,
)
from search_spaces.presets import load_preset
from trainables.report_keys import TRIAL_COMPLETE

OBJECTIVES = [("forget_quality", "max"), ("model_utility", "max")]


@pytest.fixture(autouse=True)
def _sync_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def _metric(key: str, value: float, step: int, timestamp: int) -> Metric:
    return Metric(key, value, timestamp, step)


def test_a_step_logged_again_counts_once_with_its_last_value():
    """A trial Tune restarted from its epoch-1 checkpoint reports epoch 2 again: one epoch 2, the later value."""
    history = {
        "forget_quality": [_metric("forget_quality", 0.1, 1, 10), _metric("forget_quality", 0.2, 2, 20),
                           _metric("forget_quality", 0.25, 2, 30), _metric("forget_quality", 0.3, 3, 40)],
        "model_utility": [_metric("model_utility", 0.6, 1, 10), _metric("model_utility", 0.5, 2, 20),
                          _metric("model_utility", 0.55, 2, 30), _metric("model_utility", float("nan"), 3, 40)],
    }
    assert epoch_values(history) == {1: {"forget_quality": 0.1, "model_utility": 0.6},
                                     2: {"forget_quality": 0.25, "model_utility": 0.55}}  # epoch 3: NaN utility
    assert epoch_values({**history, "privleak": []}) == {}  # an objective never logged: no candidate


def _child(runs: SweepRuns, trial_id: str, epochs: dict[int, dict[str, float]], tags: dict | None = None) -> str:
    run_id = child_run(runs, trial_id, {"method.name": "npo", "clreg.tau": 0.1}, {})
    for epoch, metrics in epochs.items():
        log_metrics(runs, run_id, {**metrics, "train/loss": 1.0 / epoch}, step=epoch)
    if tags:
        set_tags(runs, run_id, tags)
    finish_child(runs, run_id, "FINISHED")
    return run_id


def test_the_front_is_over_every_evaluated_epoch(tmp_path: Path):
    """Three trials of three epochs, one restarted (its epoch 2 logged twice), one with an epoch that misses a
    constraint: the front, hypervolume, tags and front.json are those of the 9 (trial, epoch) points, each once."""
    uri = default_tracking_uri(tmp_path)
    runs = open_sweep(uri, "candidates", "candidates", {})
    a = {1: {"forget_quality": 0.1, "model_utility": 0.9}, 2: {"forget_quality": 0.4, "model_utility": 0.7},
         3: {"forget_quality": 0.5, "model_utility": 0.3}}
    b = {1: {"forget_quality": 0.05, "model_utility": 0.8}, 2: {"forget_quality": 0.2, "model_utility": 0.6},
         3: {"forget_quality": 0.6, "model_utility": 0.2}}
    c = {1: {"forget_quality": 0.3, "model_utility": 0.85}, 2: {"forget_quality": 0.35, "model_utility": 0.5},
         3: {"forget_quality": 0.1, "model_utility": 0.1}}
    ids = {"a": _child(runs, "a", a), "c": _child(runs, "c", c, {TAG_INFEASIBLE_EPOCHS: "1"})}
    restarted = child_run(runs, "b", {"method.name": "npo", "clreg.tau": 0.2}, {})
    log_metrics(runs, restarted, {"forget_quality": 0.9, "model_utility": 0.9}, step=2)  # before the restart
    for epoch, metrics in b.items():
        log_metrics(runs, restarted, metrics, step=epoch)
    finish_child(runs, restarted, "FINISHED")
    ids["b"] = restarted

    summary = update_pareto(runs, OBJECTIVES, epochs=True)

    points = [(t, e, [m["forget_quality"], m["model_utility"]]) for t, per in (("a", a), ("b", b), ("c", c))
              for e, m in per.items() if (t, e) != ("c", 1)]
    front = {(points[i][0], points[i][1]) for i in pareto_front([p for _, _, p in points])}
    # c's epoch 1 would be on it were it feasible; b's epoch 2 as first logged (0.9, 0.9) would dominate a's.
    assert front == {("a", 1), ("a", 2), ("a", 3), ("b", 3)}
    assert {(r["trial_id"], r["epoch"]) for r in summary.front} == front
    volume = [p for _, _, p in points]
    assert summary.hypervolume == pytest.approx(hypervolume(volume, default_reference(volume, (True, True))))
    assert (summary.num_trials, summary.num_candidates, summary.num_infeasible) == (3, 8, 1)
    client = MlflowClient(uri)
    tags = {t: client.get_run(i).data.tags for t, i in ids.items()}
    assert {t: (v["pareto"], v[TAG_PARETO_EPOCHS]) for t, v in tags.items()} == {
        "a": ("true", "1,2,3"), "b": ("true", "3"), "c": ("false", "")}
    parent = client.get_run(runs.parent_run_id).data.metrics
    assert (parent["pareto/num_candidates"], parent["pareto/num_trials"]) == (8, 3)
    table = json.loads(Path(client.download_artifacts(runs.parent_run_id, "pareto/front.json", str(tmp_path)))
                       .read_text())
    assert "epoch" in table["columns"] and len(table["data"]) == len(front)
    assert {r[table["columns"].index("label")] for r in table["data"]} >= {"npo τ=0.1 @ epoch 2"}

    # Without candidates the same runs give one point each, their last logged values.
    final = update_pareto(runs, OBJECTIVES)
    assert {r["trial_id"] for r in final.front} == {"a", "b"} and final.num_candidates == 3
    assert "epoch" not in final.front[0]


def test_pick_follows_the_stated_rule():
    values = {1: {"forget_quality": 0.1, "model_utility": 0.9, "forget_rouge": 0.8},
              2: {"forget_quality": 0.4, "model_utility": 0.7, "forget_rouge": 0.5},
              3: {"forget_quality": 0.45, "model_utility": 0.2, "forget_rouge": 0.3}}
    told = [[0.35, 0.75]]
    assert pick("last", values, OBJECTIVES) == 3
    # best_hv: the point adding most area to the told trial's (0.35 x 0.75 = 0.2625): epoch 1 gives 0.2975, epoch 2
    # 0.3, epoch 3 0.2875.
    areas = {e: hypervolume([*told, [v["forget_quality"], v["model_utility"]]], [0.0, 0.0]) for e, v in values.items()}
    assert max(areas, key=areas.get) == 2 and pick("best_hv", values, OBJECTIVES, told=told) == 2
    # ... among the feasible epochs only: with model_utility >= 0.8, epoch 1.
    assert pick("best_hv", values, OBJECTIVES, [Bound("model_utility", 0.8, None, "")], told) == 1
    # ... and every epoch dominated by the told trials: the last, as with `last`.
    assert pick("best_hv", values, OBJECTIVES, told=[[1.0, 1.0]]) == 3
    # MUSE's rule: the first epoch at or below the oracle's forget_rouge; none: the last.
    assert pick("first_at_oracle", values, OBJECTIVES, selection_metric="forget_rouge", oracle_value=0.5) == 2
    assert pick("first_at_oracle", values, OBJECTIVES, selection_metric="forget_rouge", oracle_value=0.1) == 3
    with pytest.raises(ValueError, match="trial_value must be last, best_hv or first_at_oracle"):
        pick("best", values, OBJECTIVES)


def test_the_searcher_tells_the_picked_epoch(tmp_path: Path):
    """A real SQLite study: the trial's per-epoch results reach the searcher through Tune's `on_trial_result`, and
    it tells the epoch best_hv picks, with the epoch stored on the Optuna trial."""
    searcher = StudySearcher(load_preset("clreg-default"), 4, OBJECTIVES, optuna.samplers.RandomSampler(seed=0),
                             "s", f"sqlite:///{tmp_path / 'optuna.db'}", grid=[],
                             trial_value=TrialValue("best_hv"))
    epochs = {1: {"forget_quality": 0.1, "model_utility": 0.9}, 2: {"forget_quality": 0.4, "model_utility": 0.7},
              3: {"forget_quality": 0.45, "model_utility": 0.2}}
    searcher.suggest("t0")
    for epoch in (1, 2):
        searcher.on_trial_result("t0", {"epoch": epoch, "train/loss": 0.5, **epochs[epoch]})
    searcher.on_trial_result("t0", {"epoch": 3, "train/loss": 0.4})  # a training report: no objectives, no candidate
    searcher.on_trial_complete("t0", {"epoch": 3, TRIAL_COMPLETE: 1, **epochs[3]})
    trial = searcher._study.trials[0]
    # Alone in the study, epoch 2 dominates the largest area (0.4 x 0.7).
    assert (trial.values, trial.user_attrs[ATTR_EPOCH]) == ([0.4, 0.7], 2)
    assert trial.user_attrs["clreg.metrics"] == {**epochs[2], "train/loss": 0.5}  # epoch 2's report, whole


def test_pruning_keeps_the_front_epochs_and_every_final_model(tmp_path: Path):
    trial = tmp_path / "trial"
    for name in ("epoch-1", "epoch-2", "epoch-3", "final_model"):
        (trial / "seed-0" / name).mkdir(parents=True)
    assert candidate_model(trial, 0, 4, last_epoch=4) == trial / "seed-0" / "final_model"
    assert candidate_model(trial, 0, 2, last_epoch=4) == trial / "seed-0" / "epoch-2"
    gone = prune_epoch_models(trial, keep=[2])
    assert sorted(p.name for p in gone) == ["epoch-1", "epoch-3"]
    assert sorted(p.name for p in (trial / "seed-0").iterdir()) == ["epoch-2", "final_model"]
    assert prune_epoch_models(trial, keep=[]) == [trial / "seed-0" / "epoch-2"]
    assert [p.name for p in (trial / "seed-0").iterdir()] == ["final_model"]
