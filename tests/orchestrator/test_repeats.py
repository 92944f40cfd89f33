"""Averaging a point's seeds: the means and spreads a repeated trial reports."""

from __future__ import annotations

import math
import statistics

import pytest

from orchestrator.repeats import mean_over_seeds


def test_means_and_sample_std_match_statistics():
    results = [{"forget_quality": 0.2, "model_utility": 0.5, "trial_complete": 1},
               {"forget_quality": 0.4, "model_utility": 0.6, "trial_complete": 1},
               {"forget_quality": 0.9, "model_utility": 0.4, "trial_complete": 1}]
    out = mean_over_seeds(results)
    for k in ("forget_quality", "model_utility"):
        values = [r[k] for r in results]
        assert out[k] == pytest.approx(statistics.fmean(values))
        assert out[f"{k}_std"] == pytest.approx(statistics.stdev(values))
    assert "trial_complete" not in out


def test_a_metric_missing_or_non_finite_in_one_seed_is_left_out():
    out = mean_over_seeds([{"a": 1.0, "b": 2.0, "c": 1.0}, {"a": 3.0, "b": math.nan}])
    assert out == {"a": 2.0, "a_std": pytest.approx(math.sqrt(2.0))}


def test_one_seed_has_zero_spread_and_none_is_an_error():
    assert mean_over_seeds([{"a": 0.5}]) == {"a": 0.5, "a_std": 0.0}
    with pytest.raises(ValueError, match="at least one result"):
        mean_over_seeds([])
