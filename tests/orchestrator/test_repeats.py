"""Averaging a point's seeds: the means and spreads a repeated trial reports."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from orchestrator.repeats import mean_over_seeds, run_seeds
from trainables.report_keys import OUTCOME_FILE


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


def _finish(out, seed: int, **metrics) -> None:
    (out / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
    (out / f"seed-{seed}" / OUTCOME_FILE).write_text(json.dumps({**metrics, "trial_complete": 1}))


def test_run_seeds_trains_only_unfinished_seeds_in_one_run_and_reports_means(tmp_path):
    """The orchestration around the one Ray Train run: which seeds it is given, what is reported (the run itself is
    tested in tests/engine/test_trial_runs.py)."""
    _finish(tmp_path, 0, forget_quality=0.2, train_seconds=1.0)  # finished by an earlier attempt
    calls = []

    def fit(pending: list[int]) -> dict:
        calls.append(pending)
        _finish(tmp_path, 1, forget_quality=0.4, train_seconds=3.0)
        _finish(tmp_path, 2, forget_quality=0.9, train_seconds=2.0)
        return {"trial_complete": 1, "seeds_trained": 2, "run_seconds": 20.0, "setup/import_seconds": 1.5}

    final = run_seeds([0, 1, 2], tmp_path, fit)
    assert calls == [[1, 2]]
    assert [final[f"seed{s}/forget_quality"] for s in (0, 1, 2)] == [0.2, 0.4, 0.9]
    assert final["forget_quality"] == pytest.approx(0.5) and final["num_seeds"] == 3
    assert final["trial_complete"] == 1
    assert final["train_seconds"] == pytest.approx(2.0)  # a per-seed figure: the mean
    assert final["run_seconds"] == 20.0 and final["setup/import_seconds"] == 1.5  # the run's own, once
    assert run_seeds([0, 1, 2], tmp_path, fit)["forget_quality"] == pytest.approx(0.5)
    assert calls == [[1, 2]]  # all finished: no second run


def test_one_seed_reports_its_own_metrics_through_the_same_channel(tmp_path):
    """A trial of one seed: its outcome file's metrics as they are, with the run's costs; no spread, no copies."""
    def fit(pending: list[int]) -> dict:
        assert pending == [7]
        _finish(tmp_path, 7, forget_quality=0.3, train_seconds=4.0, node_id="node-a")
        return {"trial_complete": 1, "run_seconds": 9.0, "setup/import_seconds": 1.0}

    assert run_seeds([7], tmp_path, fit) == {"forget_quality": 0.3, "train_seconds": 4.0, "node_id": "node-a",
                                             "trial_complete": 1, "run_seconds": 9.0, "setup/import_seconds": 1.0}


def test_run_seeds_fails_when_a_seed_did_not_finish(tmp_path):
    with pytest.raises(RuntimeError, match="seed 1 ended without its final evaluation"):
        run_seeds([0, 1], tmp_path, lambda pending: _finish(tmp_path, 0, forget_quality=0.2) or {})
