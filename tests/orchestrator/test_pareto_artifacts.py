"""The Pareto pictures with reference markers, on plain numbers: drawn and labelled, never part of the front."""

from __future__ import annotations

import re

import numpy as np
import pytest

from orchestrator.pareto import pareto_front
from orchestrator.pareto_artifacts import Marker, pareto_figure, pareto_html, trial_label

POINTS = [[0.2, 0.8], [0.5, 0.5], [0.8, 0.2], [0.3, 0.3]]
LABELS = ["a", "b", "c", "d"]
NAMES = ["forget_quality", "model_utility"]
MAXIMIZE = [True, True]
MARKERS = [Marker("target (before unlearning)", (0.01, 0.95)), Marker("oracle (retain only)", (1.0, 0.9))]


def test_figure_draws_each_marker_with_its_own_symbol_and_label() -> None:
    front = pareto_front(POINTS, MAXIMIZE)
    fig = pareto_figure(POINTS, front, LABELS, NAMES, MAXIMIZE, markers=MARKERS)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["trials (4)", "Pareto front (3)", "target (before unlearning)", "oracle (retain only)"]
    trials, on_front, target, oracle = ax.collections
    np.testing.assert_allclose(trials.get_offsets(), POINTS)
    np.testing.assert_allclose(on_front.get_offsets(), [POINTS[i] for i in front])
    np.testing.assert_allclose(target.get_offsets(), [[0.01, 0.95]])
    np.testing.assert_allclose(oracle.get_offsets(), [[1.0, 0.9]])
    assert target.get_paths()[0] != oracle.get_paths()[0]  # distinct symbols
    annotations = {t.get_text(): t.xy for t in ax.texts}
    assert annotations["target (before unlearning)"] == (0.01, 0.95)
    assert annotations["oracle (retain only)"] == (1.0, 0.9)
    # The staircase joins the front only: its vertices are front points and their corners.
    (staircase,) = ax.lines
    assert set(staircase.get_xdata()) == {0.2, 0.5, 0.8}


def test_infeasible_trials_are_drawn_apart_and_unlabelled() -> None:
    front = pareto_front(POINTS, MAXIMIZE)
    fig = pareto_figure(POINTS, front, LABELS, NAMES, MAXIMIZE, label_all=True, infeasible=[[0.9, 0.05]])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["trials (4)", "infeasible (1)", "Pareto front (3)"]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), [[0.9, 0.05]])
    assert sorted(t.get_text() for t in ax.texts) == LABELS  # the feasible trials only
    page = pareto_html(POINTS, front, LABELS, NAMES, MAXIMIZE, infeasible=[[0.9, 0.05]])
    assert page.count("class='infeasible'") == 1 and page.count("<circle") == len(POINTS)
    assert "4 trials, 3 on the front (red), 1 infeasible (light grey crosses" in page


def test_one_objective_markers_are_horizontal_lines() -> None:
    fig = pareto_figure([[0.4], [0.6]], [1], ["a", "b"], ["forget_quality"], [True],
                        markers=[Marker("oracle (retain only)", (1.0,))])
    ax = fig.axes[0]
    (line,) = ax.lines
    assert line.get_label() == "oracle (retain only)" and list(line.get_ydata()) == [1.0, 1.0]


def test_html_shows_markers_in_plot_and_table_and_keeps_the_front_table() -> None:
    front = pareto_front(POINTS, MAXIMIZE)
    plain = pareto_html(POINTS, front, LABELS, NAMES, MAXIMIZE)
    page = pareto_html(POINTS, front, LABELS, NAMES, MAXIMIZE, MARKERS)
    assert "<script" not in page and "src=" not in page
    assert page.count("<circle") == plain.count("<circle") == 4
    assert page.count("<polygon") == 2 and plain.count("<polygon") == 0
    assert "4 trials, 3 on the front" in page
    # Each marker: a labelled shape whose tooltip gives its values.
    for label, values in (("target (before unlearning)", "0.01&#10;model_utility = 0.95"),
                          ("oracle (retain only)", "1&#10;model_utility = 0.9")):
        assert f"<title>{label}&#10;forget_quality = {values}</title>" in page
        assert f">{label}</text>" in page
    front_table = re.search(r"<table>.*?</table>", plain).group(0)
    assert front_table in page  # the front's rows are the same with and without markers
    references = page.split("Reference points (not part of the front)")[1]
    assert "<td>target (before unlearning)</td><td>0.01</td><td>0.95</td>" in references
    assert "<td>oracle (retain only)</td><td>1</td><td>0.9</td>" in references


def test_html_axes_reach_a_marker_outside_the_trials() -> None:
    """The oracle at forget quality 1.0 lies right of every trial; the x ticks must cover it."""
    page = pareto_html(POINTS, [0, 1, 2], LABELS, NAMES, MAXIMIZE, MARKERS)
    ticks = [float(t) for t in re.findall(r"text-anchor='middle'>([0-9.]+)</text>", page)]
    assert max(ticks) >= 1.0 and min(ticks) <= 0.01 + 0.1


def test_a_marker_with_the_wrong_number_of_values_is_refused() -> None:
    with pytest.raises(ValueError, match="marker 'target' has 1 values, expected 2"):
        pareto_html(POINTS, [0], LABELS, NAMES, MAXIMIZE, [Marker("target", (0.5,))])


def test_a_label_names_the_method_layer_and_clreg_only_when_it_trained():
    rmu = {"method.name": "rmu", "method.layer": "3", "clreg.enabled": "False", "clreg.tau": "0.5", "train.seed": "1"}
    assert trial_label(rmu, "t1") == "rmu no-CLReg layer=3 seed=1"
    assert trial_label({**rmu, "clreg.enabled": "True", "clreg.layer": "last-1"}, "t1") == \
        "rmu layer=3 τ=0.5 last-1 seed=1"
    assert trial_label({}, "t1") == "t1"
