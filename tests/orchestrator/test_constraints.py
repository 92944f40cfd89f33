"""`search.constraints`: resolving bounds against the reference points, judging trials, and what the front makes of
them (`orchestrator.constraints`, `pareto.summarize`)."""

from __future__ import annotations

import math

import pytest

from orchestrator.constraints import (
    UNMEASURED,
    Bound,
    ConstraintError,
    resolve_bounds,
    violation_text,
    violations,
)
from orchestrator.pareto import summarize
from orchestrator.references import ORACLE, TARGET, ReferencePoint, References
from orchestrator.sweep_config import Constraint, SweepConfig

REFS = References((ReferencePoint(TARGET, "target", {"model_utility": 0.5, "privleak": -20.0}),
                   ReferencePoint(ORACLE, "oracle", {"model_utility": 0.4, "forget_quality": 1.0})))


def test_relative_bounds_are_factors_of_the_reference_and_absolute_ones_stay():
    bounds = resolve_bounds([Constraint(metric="model_utility", min=0.9, of="target"),
                             Constraint(metric="forget_quality", min=0.25, max=0.5, of="oracle"),
                             Constraint(metric="privleak", max=30.0)], REFS)
    assert [(b.metric, b.low, b.high) for b in bounds] == [
        ("model_utility", pytest.approx(0.45), None), ("forget_quality", 0.25, 0.5), ("privleak", None, 30.0)]
    assert bounds[0].text == "model_utility >= 0.45 (0.9 x target 0.5)"
    assert bounds[1].text == "0.25 <= forget_quality <= 0.5 (0.25 and 0.5 x oracle 1)"
    assert bounds[2].text == "privleak <= 30"


@pytest.mark.parametrize("constraint,message", [
    (Constraint(metric="privleak", min=0.5, of="target"), "the target has -20; a relative bound needs a positive"),
    (Constraint(metric="privleak", min=0.5, of="oracle"), "the oracle has no value of it"),
])
def test_a_relative_bound_without_a_positive_reference_value_is_refused(constraint, message):
    with pytest.raises(ConstraintError, match=message):
        resolve_bounds([constraint], REFS)


def test_a_relative_bound_without_its_reference_point_names_why_it_is_absent():
    refs = References(REFS.points[:1], {ORACLE: "no oracle: prepare.enabled is false"})
    with pytest.raises(ConstraintError, match=r"search.constraints\[0\] \(model_utility, of: oracle\): there is no "
                                              r"oracle point .*prepare.enabled is false.*drop `of`"):
        resolve_bounds([Constraint(metric="model_utility", min=0.9, of="oracle")], refs)


def test_violations_are_how_far_outside_each_bound_and_unmeasured_counts_as_outside():
    bounds = [Bound("model_utility", 0.45, None, "model_utility >= 0.45"), Bound("privleak", -10.0, 10.0, "range")]
    assert violations({"model_utility": 0.5, "privleak": 0.0}, bounds) == pytest.approx([-0.05, -10.0])
    assert violations({"model_utility": 0.4, "privleak": 12.0}, bounds) == pytest.approx([0.05, 2.0])
    assert violations({"model_utility": math.nan}, bounds) == [UNMEASURED, UNMEASURED]
    assert max(violations({"model_utility": 0.45, "privleak": 10.0}, bounds)) <= 0  # on the bound is inside
    assert max(violations({"model_utility": 0.449, "privleak": 0.0}, bounds)) > 0
    assert violation_text({"model_utility": 0.4, "privleak": 0.0}, bounds) == (
        "model_utility=0.4 outside model_utility >= 0.45")
    assert violation_text({"model_utility": 0.5, "privleak": 0.0}, bounds) == ""


def test_infeasible_rows_leave_the_front_and_the_hypervolume_but_are_kept_apart():
    rows = [{"fq": 0.9, "mu": 0.1}, {"fq": 0.5, "mu": 0.5}, {"fq": 0.2, "mu": 0.4}, {"fq": 0.1}]
    objectives = [("fq", "max"), ("mu", "max")]
    everything = summarize(rows, objectives)
    assert everything.scored == [0, 1, 2] and everything.front == [0, 1]
    judged = summarize(rows, objectives, feasible=[False, True, True, True])
    assert judged.scored == [1, 2] and judged.front == [0]  # indices into `scored`: row 1 alone
    assert judged.infeasible == [0] and judged.infeasible_points == [[0.9, 0.1]]
    assert judged.hypervolume == pytest.approx(0.5 * 0.5)
    with pytest.raises(ValueError, match="feasible has 2 values, expected 4"):
        summarize(rows, objectives, feasible=[True, True])


@pytest.mark.parametrize("search,message", [
    ({"constraints": [{"metric": "model_utility"}]}, "give min, max or both"),
    ({"constraints": [{"metric": "model_utility", "min": 0.9, "max": 0.5}]}, "min 0.9 is above max 0.5"),
    ({"constraints": [{"metric": "model_utility", "min": 0.9, "of": "retain"}]}, "'target' or 'oracle'"),
    ({"constraints": [{"metric": "model_utility", "min": 0.1}, {"metric": "model_utility", "max": 0.9}]},
     "each metric may appear once"),
])
def test_malformed_constraints_are_refused(search, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig.model_validate({"search": search})


def test_validate_prints_the_constraints_as_written(tmp_path, capsys):
    import yaml

    from orchestrator import cli

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"storage": {"dir": str(tmp_path / "sweeps")},
                                    "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
                                    "search": {"constraints": [
                                        {"metric": "model_utility", "min": 0.9, "of": "target"},
                                        {"metric": "privleak", "min": -5, "max": 5}]}}))
    assert cli.main(["validate", str(path)]) == 0
    assert ("constraints: model_utility >= 0.9 x target; -5 <= privleak <= 5 (relative bounds are resolved against "
            "the reference points when the sweep starts)") in capsys.readouterr().out


def test_muted_table_rows_are_greyed_in_html_and_marked_in_markdown_by_their_cells():
    from orchestrator.report_document import Table, to_html, to_markdown

    table = Table(["", "trial"], [["*", "a"], ["×", "b"]], muted=frozenset({1}))
    page = to_html([table], "t", {})
    assert "<tr><td>*</td><td>a</td></tr><tr class='muted'><td>×</td><td>b</td></tr>" in page
    assert "tr.muted td{color:#999}" in page
    assert "| × | b |" in to_markdown([table])
