"""The Optuna side of the sweep, with real studies and no Ray: trial states and every sampler."""

from __future__ import annotations

import math
import os
import pickle
import random

import optuna
import pytest

from orchestrator.search import limit_concurrency, make_sampler, startup_trials, trial_outcome
from orchestrator.sweep_config import SearchConfig
from search_spaces.presets import load_preset
from trainables.report_keys import TRIAL_COMPLETE

State = optuna.trial.TrialState
METRICS = ["forget_quality", "model_utility"]


@pytest.mark.parametrize(
    ("result", "error", "state", "values"),
    [
        ({TRIAL_COMPLETE: 1, "forget_quality": 0.3, "model_utility": 0.5}, False, State.COMPLETE, [0.3, 0.5]),
        # ASHA stopped it: the last result is an intermediate epoch, never told as COMPLETE.
        ({"forget_quality": 0.3, "model_utility": 0.5, "epoch": 1}, False, State.PRUNED, None),
        ({TRIAL_COMPLETE: 1, "forget_quality": 0.3}, False, State.FAIL, None),  # an objective is missing
        ({TRIAL_COMPLETE: 1, "forget_quality": float("nan"), "model_utility": 0.5}, False, State.FAIL, None),
        ({TRIAL_COMPLETE: 1, "forget_quality": 0.3, "model_utility": 0.5}, True, State.FAIL, None),
        (None, True, State.FAIL, None),
        (None, False, State.PRUNED, None),
    ],
)
def test_trial_outcome(result, error, state, values):
    assert trial_outcome(result, METRICS, error) == (state, values)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_every_sampler_runs_a_multi_objective_study_over_the_default_space(sampler):
    space = load_preset("clreg-default")
    search = SearchConfig(sampler=sampler, num_trials=6, seed=3)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=make_sampler(search, 6))
    for i in range(6):
        trial = study.ask()
        params = space.sample(trial, num_layers=8)
        assert 0.05 <= params["clreg.tau"] <= 1.0 and params["clreg.layer"] in {f"last-{k}" for k in range(1, 5)}
        study.tell(trial, [params["clreg.tau"], 1.0 / (1 + i)])
    assert len(study.best_trials) >= 1
    assert all(t.state == State.COMPLETE for t in study.trials)


def test_same_seed_proposes_the_same_parameters():
    space = load_preset("clreg-default")

    def first_params(seed: int) -> dict:
        study = optuna.create_study(directions=["maximize", "maximize"],
                                    sampler=make_sampler(SearchConfig(sampler="tpe", seed=seed), 4))
        return space.sample(study.ask(), num_layers=8)

    assert first_params(7) == first_params(7)
    assert first_params(7) != first_params(8)


def test_a_restored_searcher_does_not_tell_a_finished_trial_twice(tmp_path):
    """The searcher state saved before a trial ended, restored after the study recorded its end (a driver killed in
    between): completing the trial again keeps the study's first outcome instead of failing the sweep."""
    from orchestrator.search import make_searcher

    def searcher():
        return make_searcher(load_preset("clreg-default"), 8, [("forget_quality", "max"), ("model_utility", "max")],
                             SearchConfig(sampler="random"), 1, study_name="s", storage_url=f"sqlite:///{tmp_path}/s.db")

    first = searcher()
    assert first.suggest("t1")
    first.save(str(tmp_path / "searcher.pkl"))
    done = {TRIAL_COMPLETE: 1, "forget_quality": 0.3, "model_utility": 0.6}
    first.on_trial_complete("t1", done)

    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t1", {TRIAL_COMPLETE: 1, "forget_quality": 0.9, "model_utility": 0.1})
    (trial,) = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db").trials
    assert trial.state == State.COMPLETE and trial.values == [0.3, 0.6]


def test_a_restored_searcher_reconnects_to_the_study_where_it_is_now(tmp_path):
    """A sweep folder moved after its searcher was saved: inside `study_url_for_restore` the restored searcher tells
    the study at its new address, nothing is created at the old one, and the address does not outlive the block."""
    from orchestrator.search import STUDY_URL_ENV, make_searcher, study_url_for_restore

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    searcher = make_searcher(load_preset("clreg-default"), 8, [("forget_quality", "max"), ("model_utility", "max")],
                             SearchConfig(sampler="random"), 1, study_name="s", storage_url=f"sqlite:///{old}/s.db")
    assert searcher.suggest("t1")
    pickled = pickle.dumps(searcher)  # as Tune's tuner.pkl holds it
    searcher.save(str(old / "searcher.pkl"))
    old.rename(new)
    with study_url_for_restore(f"sqlite:///{new}/s.db"):
        restored = pickle.loads(pickled)
        restored.restore(str(new / "searcher.pkl"))
    assert STUDY_URL_ENV not in os.environ
    restored.on_trial_complete("t1", {TRIAL_COMPLETE: 1, "forget_quality": 0.3, "model_utility": 0.6})
    (trial,) = optuna.load_study(study_name="s", storage=f"sqlite:///{new}/s.db").trials
    assert trial.state == State.COMPLETE and trial.values == [0.3, 0.6]
    assert not old.exists()


def test_lost_trials_are_failed_and_known_ones_left_running(tmp_path):
    """A resume fails the RUNNING Optuna trials whose Tune trial the restored experiment does not know; the
    searcher names each Optuna trial's Tune trial, so the ones Tune will run again are left alone."""
    from orchestrator.search import ATTR_LOST, ATTR_TUNE_TRIAL, fail_lost_trials, make_searcher

    url = f"sqlite:///{tmp_path}/s.db"
    searcher = make_searcher(load_preset("clreg-default"), 8, [("forget_quality", "max"), ("model_utility", "max")],
                             SearchConfig(sampler="random"), 3, study_name="s", storage_url=url)
    for trial_id in ("done", "pending", "lost"):
        assert searcher.suggest(trial_id)
    searcher.on_trial_complete("done", {TRIAL_COMPLETE: 1, "forget_quality": 0.3, "model_utility": 0.6})
    optuna.load_study(study_name="s", storage=url).ask()  # asked, never named: lost as well

    assert fail_lost_trials(url, "s", {"done", "pending"}, "why") == [2, 3]
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.RUNNING, State.FAIL, State.FAIL]
    assert [t.user_attrs.get(ATTR_TUNE_TRIAL) for t in trials] == ["done", "pending", "lost", None]
    assert [t.user_attrs.get(ATTR_LOST) for t in trials] == [None, None, "why", "why"]


def _searcher(url: str, space: str = "clreg-default", sampler: str = "random", num_trials: int = 4):
    from orchestrator.search import make_searcher

    return make_searcher(load_preset(space), 8, [("forget_quality", "max"), ("model_utility", "max")],
                         SearchConfig(sampler=sampler), num_trials, study_name="s", storage_url=url)


def test_a_pickled_searcher_continues_the_same_study_from_a_moved_folder(tmp_path):
    """Tune's `tuner.pkl` and searcher checkpoint restored after the sweep folder moved: trials asked before the
    move are told under their numbers in the moved study, and new trials continue its numbering."""
    from orchestrator.search import ATTR_TUNE_TRIAL, study_url_for_restore

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    searcher = _searcher(f"sqlite:///{old}/s.db")
    asked = {trial_id: searcher.suggest(trial_id) for trial_id in ("t1", "t2")}
    pickled = pickle.dumps(searcher)
    searcher.save(str(old / "searcher.pkl"))
    old.rename(new)
    with study_url_for_restore(f"sqlite:///{new}/s.db"):
        restored = pickle.loads(pickled)
        restored.restore(str(new / "searcher.pkl"))
    restored.on_trial_complete("t2", {TRIAL_COMPLETE: 1, "forget_quality": 0.2, "model_utility": 0.7})
    restored.on_trial_complete("t1", None, error=True)
    assert restored.suggest("t3")
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{new}/s.db").trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [State.FAIL, State.COMPLETE, State.RUNNING]
    assert trials[1].values == [0.2, 0.7]
    assert [t.user_attrs[ATTR_TUNE_TRIAL] for t in trials] == ["t1", "t2", "t3"]
    assert trials[0].params.items() <= asked["t1"].items() and trials[1].params.items() <= asked["t2"].items()
    assert not old.exists()


def test_grid_points_are_enqueued_once_per_study(tmp_path):
    """A grid preset's combinations are asked first, in order; a second searcher on the same study (a resumed
    sweep) does not enqueue them again."""
    url = f"sqlite:///{tmp_path}/s.db"
    grid = [g for g in load_preset("tau-ablation").grid(8) if g]
    first = _searcher(url, space="tau-ablation", num_trials=len(grid))
    _searcher(url, space="tau-ablation", num_trials=len(grid))
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.get_trials(states=(State.WAITING,))) == len(grid)
    for i, point in enumerate(grid):
        config = first.suggest(f"t{i}")
        assert {k: config[k] for k in point} == point


def test_concurrent_trials_stay_running_in_the_study_for_the_constant_liar(tmp_path):
    """Behind Tune's ConcurrencyLimiter, every asked trial is RUNNING in the study until it is told, which is what
    a constant-liar TPE reads; the limiter holds back further suggestions, never an asked trial."""
    from ray.tune.search import ConcurrencyLimiter

    url = f"sqlite:///{tmp_path}/s.db"
    limited = ConcurrencyLimiter(_searcher(url, sampler="tpe"), max_concurrent=2)
    assert limited.suggest("t1") and limited.suggest("t2")
    assert limited.suggest("t3") is None
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [State.RUNNING, State.RUNNING]
    limited.on_trial_complete("t1", {"forget_quality": 0.3, "model_utility": 0.5, "epoch": 1})  # stopped early
    assert limited.suggest("t3")
    states = [t.state for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == [State.PRUNED, State.RUNNING, State.RUNNING]


@pytest.mark.parametrize("budget,startup", [(4, 3), (8, 3), (16, 4), (32, 8), (40, 10), (500, 10)])
def test_model_based_samplers_start_modelling_after_a_quarter_of_the_budget(budget, startup):
    """TPE and GP leave random search after `startup` trials: the 9th of a 32-trial sweep is already modelled."""
    assert startup_trials(budget) == startup
    for name in ("tpe", "gp"):
        sampler = make_sampler(SearchConfig(sampler=name, seed=0), budget)
        assert sampler._n_startup_trials == startup  # no public accessor in Optuna 5


def _objectives(config: dict) -> dict:
    """A deterministic stand-in for a trial's outcome: two objectives that depend on every sampled number."""
    numbers = [v for _, v in sorted(config.items()) if isinstance(v, float)]
    return {TRIAL_COMPLETE: 1, "forget_quality": math.sin(sum(numbers)) ** 2,
            "model_utility": math.cos(3 * numbers[0]) ** 2}


def _proposals(url: str, order: str, load_seed: int, num_trials: int = 10, slots: int = 3) -> list[dict]:
    """The points a TPE study proposes for `num_trials` trials run `slots` at a time, each taking a random time
    drawn from `load_seed` (the machine's load), driven as Tune drives the searcher: free slots are filled by
    `suggest` until it holds back, then the trial that ends first is reported."""
    search = SearchConfig(sampler="tpe", num_trials=num_trials, max_concurrent=slots, order=order)
    limited = limit_concurrency(_searcher(url, sampler="tpe", num_trials=num_trials), search)
    load = random.Random(load_seed)
    clock, running, asked = 0.0, {}, {}
    while len(asked) < num_trials or running:
        while len(asked) < num_trials and (config := limited.suggest(f"t{len(asked)}")) is not None:
            trial_id = f"t{len(asked)}"
            asked[trial_id] = config
            running[trial_id] = clock + load.uniform(1.0, 10.0)
        ended = min(running, key=running.get)
        clock = running.pop(ended)
        limited.on_trial_complete(ended, _objectives(asked[ended]))
    return [asked[f"t{i}"] for i in range(num_trials)]


def test_deterministic_order_proposes_the_same_trials_whatever_order_they_end_in(tmp_path):
    """`search.order: deterministic`: the same seed gives the same trials under a different load (past TPE's 3
    random start-up trials, where timing would otherwise change what it models); `async` does not. (With 2 slots
    and 10 trials async TPE happened to propose the same points under these loads; with 3 it does not.)"""
    runs = {(order, load): _proposals(f"sqlite:///{tmp_path}/{order}-{load}.db", order, load)
            for order in ("deterministic", "async") for load in (1, 3)}
    assert runs[("deterministic", 1)] == runs[("deterministic", 3)]
    assert runs[("async", 1)] != runs[("async", 3)]  # the premise: timing changes what an async study proposes
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/deterministic-1.db")
    assert [t.state for t in study.trials] == [State.COMPLETE] * 10


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp"])
def test_constrained_samplers_are_told_each_trials_violations(tmp_path, sampler):
    """With `search.constraints`, every told trial carries its violations as Optuna constraints (what TPE, NSGA-II
    and GP rank infeasible trials by), a trial stopped before its evaluation counting as infeasible; a pickled
    searcher (Tune's `tuner.pkl`) keeps the bounds."""
    from orchestrator.constraints import Bound
    from orchestrator.search import make_searcher

    url = f"sqlite:///{tmp_path}/s.db"
    searcher = make_searcher(load_preset("clreg-default"), 8, [("forget_quality", "max"), ("model_utility", "max")],
                             SearchConfig(sampler=sampler), 8, study_name="s", storage_url=url,
                             bounds=[Bound("model_utility", 0.4, None, "model_utility >= 0.4")])
    for trial_id in ("kept", "collapsed", "stopped", "crashed"):
        searcher.suggest(trial_id)
    searcher = pickle.loads(pickle.dumps(searcher))
    searcher.on_trial_complete("kept", {TRIAL_COMPLETE: 1, "forget_quality": 0.2, "model_utility": 0.5})
    searcher.on_trial_complete("collapsed", {TRIAL_COMPLETE: 1, "forget_quality": 0.9, "model_utility": 0.1})
    searcher.on_trial_complete("stopped", {"epoch": 1})  # pruned before its evaluation
    searcher.on_trial_complete("crashed", None, error=True)
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.COMPLETE, State.PRUNED, State.FAIL]
    assert [t.constraints for t in trials] == [{"model_utility": pytest.approx(-0.1)},
                                               {"model_utility": pytest.approx(0.3)}, {"model_utility": 1.0}, {}]
    assert searcher.suggest("next")  # the sampler asks with the constrained trials in the study
