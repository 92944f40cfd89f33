"""The search loop of benchmarks/search_compute.py over the real TPE sampler and space, with a stand-in trainer:
what each variant is charged, told and allowed on the front. No Ray, no training."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from benchmarks import search_compute as sc
from orchestrator.pareto import default_reference, hypervolume


@dataclass
class _Objective:
    steps: int = 6
    num_layers: int = 4


class _StandIn:
    """Evaluations at steps 2, 4, 6: forget quality rises with lr and steps, utility falls with them (tau
    softens the fall), so later evaluations trade utility for forgetting and some points dominate others."""

    every = 2

    def __init__(self) -> None:
        self.objective = _Objective()
        self.calls = 0

    def __call__(self, params: dict) -> sc.Trained:
        self.calls += 1
        strength = (math.log10(params["train.lr"]) + 6) / 3  # 0 .. 1 over the preset's lr range
        evaluations = {s: [strength * s / 6, 1 - strength * (s / 6) * (1.2 - params["clreg.tau"])] for s in (2, 4, 6)}
        return sc.Trained(evaluations, None, 0.1, 0.05)


def test_final_and_best_hv_spend_the_budget_in_whole_trials():
    runner = _StandIn()
    final = sc.run_variant(runner, "final", seed=0, budget_steps=24)
    assert [r["steps"] for r in final] == [6] * 4 and final[-1]["spent"] == 24
    assert all(r["told_at"] == 6 for r in final)
    best = sc.run_variant(runner, "best_hv", seed=0, budget_steps=24)
    assert len(best) == 4 and all(r["told_at"] in (2, 4, 6) for r in best)
    # With candidates the front is over 3 evaluations a trial: never below the final-only front of the same trials.
    assert sc.hv_at(final, candidates=True, budget_steps=24) >= sc.hv_at(final, candidates=False, budget_steps=24)


def test_a_stopped_trial_is_charged_its_steps_and_is_never_on_the_front():
    runner = _StandIn()
    records = sc.run_variant(runner, "stopping", seed=1, budget_steps=48)
    stopped = [r for r in records if r["state"] == "PRUNED"]
    assert stopped, [r["evaluations"] for r in records]  # the stand-in's points dominate each other often
    assert all(r["steps"] < 6 and max(map(int, r["evaluations"])) == r["steps"] for r in stopped)
    assert records[-1]["spent"] == sum(r["steps"] for r in records) <= 48
    assert len(records) > 48 // 6  # the saved steps bought more trials
    finished = [r for r in records if r["state"] == "COMPLETE"]
    points = [r["evaluations"]["6"] for r in finished]
    assert sc.hv_at(records, candidates=False, budget_steps=48) == pytest.approx(
        hypervolume(points, default_reference(points, (True, True))))


def test_summary_reads_the_shared_studies():
    runner = _StandIn()
    records = [r for v in ("final", "stopping") for r in sc.run_variant(runner, v, seed=0, budget_steps=12)]
    summary = sc.summarize(records, [6, 12], seeds=[0])
    assert set(summary) == {"final", "candidates", "stopping", "stopping+candidates"}
    assert summary["candidates"][12]["median"] >= summary["final"][12]["median"]
    assert "| candidates |" in sc.format_table(summary, steps=6)


def test_margin_and_grace_are_the_stopping_rules_knobs():
    def stopped(**knobs) -> int:
        records = sc.run_variant(_StandIn(), "stopping", seed=1, budget_steps=48, **knobs)
        return sum(r["state"] == "PRUNED" for r in records)

    assert stopped(margin=0.0) > 0
    assert stopped(margin=2.0) == 0  # no trial beats another by 2 on objectives within [0, 1]
    assert stopped(grace=3) == 0  # the third evaluation is the last, where a trial is never stopped


def test_by_evaluations_spans_final_only_to_every_candidate_of_the_same_trials():
    records = sc.run_variant(_StandIn(), "final", seed=0, budget_steps=24)
    summary = sc.summarize(records, [12, 24], seeds=[0])
    density = sc.by_evaluations(records, [12, 24], seeds=[0], steps=6, every=2)
    assert sorted(density) == [1, 3]  # every 2 steps, or only the last (4 does not divide 6)
    for budget in (12, 24):
        assert density[1][budget]["median"] == summary["final"][budget]["median"]
        assert density[3][budget]["median"] == summary["candidates"][budget]["median"]
    assert [set(r["evaluations"]) for r in sc.thinned(records, 6)] == [{"6"}] * 4
