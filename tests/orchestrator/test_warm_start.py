"""`search.warm_start`: an earlier sweep's finished trials seed a new study once, in the new space's terms; an
incompatible sweep is refused naming the difference. The earlier sweeps are real sweep folders (resolved sweep
file, SQLite Optuna study) whose trials were asked and told through the sweep's own searcher."""

from __future__ import annotations

import optuna
import pytest

from orchestrator.constraints import Bound
from orchestrator.search import make_searcher, sweep_study_name
from orchestrator.sweep import _create_sweep_dir, resolve_space, sweep_paths
from orchestrator.sweep_config import SweepConfig
from orchestrator.warm_start import ATTR_METRICS, ATTR_ORIGIN, WarmStartError, check_sources, warm_trials
from tests.orchestrator.conftest import told_sweep

NUM_LAYERS = 8
SPACE = {"fixed": {"method.name": "simnpo", "clreg.enabled": True},
         "parameters": {"clreg.tau": {"type": "float", "low": 0.05, "high": 1.0},
                        "clreg.layer": {"type": "layer", "last": [1, 4]}}}
State = optuna.trial.TrialState


def sweep_config(tmp_path, name: str, space: dict = SPACE, **search) -> SweepConfig:
    return SweepConfig.model_validate({"name": name, "space": space, "search": {"sampler": "tpe", **search},
                                       "storage": {"dir": str(tmp_path / "sweeps")}})


def finished_sweep(tmp_path, name: str, results: list[dict | None], **config) -> SweepConfig:
    cfg = sweep_config(tmp_path, name, **config)
    told_sweep(cfg, results, NUM_LAYERS)
    return cfg


def study_trials(cfg: SweepConfig) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=sweep_study_name(cfg.name), storage=sweep_paths(cfg).optuna_url(cfg)).trials


def test_finished_trials_of_an_earlier_sweep_seed_the_new_study_once(tmp_path):
    earlier = finished_sweep(tmp_path, "earlier", [
        {"forget_quality": 0.2, "model_utility": 0.6, "privleak": 10.0, "time_total_s": 9.0, "seed0/privleak": 9.0},
        {"forget_quality": 0.7, "model_utility": 0.1, "privleak": 2.0},
        None])
    told = study_trials(earlier)
    assert told[0].user_attrs[ATTR_METRICS] == {"forget_quality": 0.2, "model_utility": 0.6, "privleak": 10.0}

    cfg = sweep_config(tmp_path, "later", warm_start=[str(sweep_paths(earlier).root)])
    _create_sweep_dir(sweep_paths(cfg), cfg)
    space = resolve_space(cfg)
    sources = check_sources(cfg, space)
    bounds = [Bound("model_utility", 0.3, None, "model_utility >= 0.3")]
    warm = warm_trials(sources, space, NUM_LAYERS, bounds)
    assert warm.left_out == {str(sweep_paths(earlier).root): 0} and len(warm.trials) == 2  # the crashed one: none

    def searcher():
        return make_searcher(space, NUM_LAYERS, cfg.objective_modes, cfg.search, 8, sweep_study_name(cfg.name),
                             sweep_paths(cfg).optuna_url(cfg), bounds=bounds, warm=warm.trials)

    first = searcher()
    searcher()  # a resumed sweep's searcher on the same study adds nothing
    trials = study_trials(cfg)
    assert [t.state for t in trials] == [State.COMPLETE, State.COMPLETE]
    assert [t.values for t in trials] == [told[0].values, told[1].values]
    assert [t.params for t in trials] == [told[0].params, told[1].params]
    root = sweep_paths(earlier).root
    assert [t.user_attrs[ATTR_ORIGIN] for t in trials] == [f"{root}#0", f"{root}#1"]
    # Judged against this sweep's constraints from the metrics the earlier sweep stored.
    assert [t.constraints for t in trials] == [{"model_utility": pytest.approx(-0.3)},
                                               {"model_utility": pytest.approx(0.2)}]
    assert first.suggest("n0") and study_trials(cfg)[-1].state == State.RUNNING

    # Chained: a sweep warm-started from `later` takes only `later`'s own trials (none yet), not earlier's again.
    again = sweep_config(tmp_path, "chained", warm_start=[str(sweep_paths(cfg).root)])
    assert warm_trials(check_sources(again, space), space, NUM_LAYERS, []).trials == []


def test_trials_outside_the_new_space_are_left_out_and_counted(tmp_path):
    earlier = finished_sweep(tmp_path, "wide", [{"forget_quality": 0.1, "model_utility": 0.5}] * 6)
    taus = [t.params["clreg.tau"] for t in study_trials(earlier)]
    narrow = {**SPACE, "parameters": {**SPACE["parameters"],
                                      "clreg.tau": {"type": "float", "low": 0.05, "high": sorted(taus)[2]}}}
    cfg = sweep_config(tmp_path, "narrow", space=narrow, warm_start=[str(sweep_paths(earlier).root)])
    space = resolve_space(cfg)
    warm = warm_trials(check_sources(cfg, space), space, NUM_LAYERS, [])
    assert len(warm.trials) == 3 and warm.left_out == {str(sweep_paths(earlier).root): 3}
    assert "3 finished trials from" in warm.describe() and "(3 left out: values outside this sweep's space)" in (
        warm.describe())


@pytest.mark.parametrize("change,message", [
    ({"space": {**SPACE, "parameters": {"clreg.tau": SPACE["parameters"]["clreg.tau"]}}},
     "parameter clreg.layer is searched only by that sweep"),
    ({"space": {**SPACE, "parameters": {**SPACE["parameters"],
                                        "clreg.tau": {"type": "categorical", "choices": [0.1, 0.5]}}}},
     "parameter clreg.tau is a float there and a categorical here"),
])
def test_an_incompatible_sweep_is_refused_naming_the_difference(tmp_path, change, message):
    earlier = finished_sweep(tmp_path, "earlier", [{"forget_quality": 0.1, "model_utility": 0.5}])
    cfg = sweep_config(tmp_path, "later", warm_start=[str(sweep_paths(earlier).root)])
    cfg = cfg.model_copy(update={"space": change["space"]})
    with pytest.raises(WarmStartError, match=rf"search.warm_start\[0\] .*earlier: {message}"):
        check_sources(cfg, resolve_space(cfg))


def test_other_objectives_or_a_folder_that_is_no_sweep_are_refused(tmp_path):
    earlier = finished_sweep(tmp_path, "earlier", [{"forget_quality": 0.1, "model_utility": 0.5}])
    cfg = SweepConfig.model_validate({"name": "later", "space": SPACE, "storage": {"dir": str(tmp_path / "sweeps")},
                                      "objectives": [{"metric": "forget_quality"}, {"metric": "privleak",
                                                                                     "mode": "min"}],
                                      "search": {"warm_start": [str(sweep_paths(earlier).root)]}})
    with pytest.raises(WarmStartError, match=r"its objectives forget_quality \(max\), model_utility \(max\) differ "
                                             r"from this sweep's forget_quality \(max\), privleak \(min\)"):
        check_sources(cfg, resolve_space(cfg))
    nowhere = sweep_config(tmp_path, "later", warm_start=[str(tmp_path / "nope")])
    with pytest.raises(WarmStartError, match=r"search.warm_start\[0\]: .*nope is not a sweep directory"):
        check_sources(nowhere, resolve_space(nowhere))
