"""The pure parts of benchmarks/search_efficiency.py: hypervolume curves, summaries, the target test, the search
loop over the real samplers and space with a stand-in objective, the table and the plot. No Ray, no training."""

from __future__ import annotations

import math

import pytest

from benchmarks import search_efficiency as se
from orchestrator.search import startup_trials


def test_hv_curve_counts_complete_trials_only_and_never_decreases():
    values = [None, (0.5, 0.5), (0.2, 0.9), (0.1, 0.1), None, (0.0, 1.0)]
    curve = se.hv_curve(values)
    # (0.5, 0.5) alone: 0.25; adding (0.2, 0.9) adds 0.2 x 0.4; dominated points and points on the reference's
    # axes (0.0 forget quality) add nothing; failed trials (None) cost a trial and add nothing.
    assert curve == pytest.approx([0.0, 0.25, 0.33, 0.33, 0.33, 0.33])


def test_summary_and_target():
    curves = {
        "random": {0: [0.1, 0.2, 0.3, 0.4], 1: [0.0, 0.1, 0.2, 0.2], 2: [0.1, 0.1, 0.3, 0.5]},
        "tpe": {0: [0.1, 0.45, 0.5, 0.6], 1: [0.2, 0.3, 0.3, 0.3], 2: [0.1, 0.4, 0.4, 0.4]},
        "gp": {0: [0.1, 0.1, 0.1, 0.1]},
    }
    summary = se.summarize(curves, [2, 4])
    assert summary["random"][4] == {"median": 0.4, "min": 0.2, "max": 0.5}
    assert summary["tpe"][2] == {"median": 0.4, "min": 0.3, "max": 0.45}
    target = se.target_check(summary, fast=2, full=4)
    assert target["met"] is True and target["best_sampler"] == "tpe"
    assert target["ratio"] == pytest.approx(1.0)
    assert se.target_check({"tpe": summary["tpe"]}, fast=2, full=4)["met"] is None
    table = se.format_table(summary, [2, 4])
    assert "| tpe | 0.4000 (0.3000-0.4500) | 0.4000 (0.3000-0.6000) |" in table


class _StandIn:
    """A cheap deterministic objective with the interface `run_study` uses."""

    num_layers = 4

    def __call__(self, params):
        lr = math.log10(params["train.lr"])  # -5 .. -3
        fq = (lr + 5) / 2
        mu = 1 - fq * params["clreg.tau"]
        return se.Evaluation([fq, mu] if params["clreg.layer"] != "last-4" else None, 0.01, 0.02), False


@pytest.mark.parametrize("sampler", se.SAMPLERS)
def test_run_study_with_the_real_samplers_and_space(sampler):
    records = se.run_study(_StandIn(), sampler, seed=0, trials=5)
    assert [r["trial"] for r in records] == list(range(5))
    assert all(r["params"]["method.name"] == "simnpo" and r["params"]["clreg.enabled"] for r in records)
    assert {r["state"] for r in records} <= {"COMPLETE", "FAIL"}
    curve = se.curves_of(records)[sampler][0]
    assert len(curve) == 5 and curve == sorted(curve)
    costs = se.cost_summary(records)
    assert costs["evaluations"] == 5 and costs["median_point_seconds"] == pytest.approx(0.03)


def test_plot_writes_a_png(tmp_path):
    curves = {"random": {0: [0.0, 0.1, 0.2], 1: [0.1, 0.1, 0.3]}, "tpe": {0: [0.1, 0.2, 0.4]}}
    out = tmp_path / "hv.png"
    se.plot(curves, {"random_median_hv_at_full": 0.25, "full": 3, "fast": 2}, out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_samplers_share_their_start_up_trials_with_random_search_of_the_same_seed():
    records = [r for s in ("random", "tpe") for r in se.run_study(_StandIn(), s, seed=3, trials=24)]
    # TPE's start-up trials (6 of a 24-trial budget) are RandomSampler(seed)'s; failed ones (the stand-in fails
    # last-4) do not count.
    startup = startup_trials(24)
    failed = sum(r["state"] == "FAIL" for r in records if r["sampler"] == "tpe" and r["trial"] < startup)
    shared = se.shared_with_random(records)
    assert set(shared) == {"tpe"} and startup <= shared["tpe"][3] <= startup + failed + 1
