"""Splitting a Ray Train run's wall time into start, set-up and end (no Ray: the arithmetic on recorded clocks)."""

from __future__ import annotations

import pytest

from trainables.engine.outcome import fixed_costs


def test_fixed_costs_split_a_run_and_take_the_clock_readings_out():
    final = {"worker_started_at": 103.0, "reported_at": 110.0, "train_seconds": 5.0}
    assert fixed_costs(final, fit_started=100.0, fit_ended=112.5) == pytest.approx(
        {"run_seconds": 12.5, "startup_seconds": 3.0, "teardown_seconds": 2.5})
    assert final == {"train_seconds": 5.0}  # wall-clock readings are not metrics


def test_a_diverged_run_has_no_worker_start_clock():
    assert fixed_costs({"reported_at": 101.0}, 100.0, 104.0) == pytest.approx(
        {"run_seconds": 4.0, "teardown_seconds": 3.0})
