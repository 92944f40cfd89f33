"""Pictures of a sweep's Pareto front: a PNG for the MLflow run page and an HTML page to explore offline.

Both are pure functions of numbers and labels (no MLflow, no Ray), so `tracking.update_pareto` can rebuild them
after every finished trial and tests can render them without a tracking store.

The picture is the plane of the first two objectives: every trial in grey, the front in colour, joined by the
staircase that bounds the region it dominates (the area the hypervolume measures, for two objectives). With one
objective the x axis is the trial's position in the list; with three or more the picture is a projection, where
the front is no longer a staircase, so the points are left unconnected.

Reference models (the target before unlearning, the oracle trained on the retain set only) can be drawn beside
the trials as `Marker`s, each with its own symbol and label; they are context for reading the trade-off, never
members of the front, and they add nothing to the hypervolume (the caller computes both from the trials alone).

The HTML page is one self-contained file (inline SVG and CSS, no script, no CDN): MLflow serves artifacts
to machines that may be offline, and a page that loads nothing from the network opens anywhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Points = Sequence[Sequence[float]]

GREY = "#b0b0b0"
INFEASIBLE = "#d0d0d0"
FRONT = "#d62728"

# Symbol and colour of the 1st, 2nd, ... marker: matplotlib marker, SVG shape, colour.
_MARKER_STYLES = (("X", "cross", "#222222"), ("*", "star", "#1f77b4"), ("D", "diamond", "#2ca02c"))

# Trial parameters (as the search spaces name them) shown in a label, with their short names.
_LABEL_PARAMS = (("method.layer", "layer="), ("clreg.tau", "τ="), ("clreg.lambda", "λ="), ("clreg.layer", ""),
                 ("train.lr", "lr="))


@dataclass(frozen=True)
class Marker:
    """A reference model drawn beside the trials, e.g. "target (before unlearning)": never part of the front.

    Attributes:
        label: shown next to the symbol and in the legend.
        values: one finite value per objective, in the order of the objective names.
    """

    label: str
    values: tuple[float, ...]


def trial_label(params: Mapping[str, str], fallback: str) -> str:
    """Short name of a trial for plots, e.g. "npo τ=0.3 λ=1.2 last-1 seed=2".

    Reads the parameters the search spaces vary (method and its own layer, RMU's, CLReg temperature, weight, layer,
    learning rate, seed);
    numbers get 3 significant digits. CLReg settings are left out when CLReg is off, since they did nothing.

    Args:
        params: the trial's parameters, as MLflow stores them (strings).
        fallback: returned when none of those parameters is present (e.g. the trial id).
    """
    parts = [params["method.name"]] if "method.name" in params else []
    clreg_on = params.get("clreg.enabled", "True").lower() != "false"
    if not clreg_on:
        parts.append("no-CLReg")
    for key, prefix in _LABEL_PARAMS:
        if key in params and (clreg_on or not key.startswith("clreg.")):
            parts.append(prefix + _short(params[key]))
    if "train.seed" in params:
        parts.append("seed=" + params["train.seed"])
    return " ".join(parts) or fallback


def pareto_figure(
    points: Points,
    front_idx: Sequence[int],
    labels: Sequence[str],
    objective_names: Sequence[str],
    maximize: Sequence[bool],
    label_all: bool = False,
    markers: Sequence[Marker] = (),
    infeasible: Points = (),
) -> Figure:
    """Scatter of all trials with the front highlighted, joined and labelled; rendered with Agg (no display).

    Args:
        points: one row per trial, one finite value per objective.
        front_idx: indices of the front members in `points` (from `pareto.pareto_front`).
        labels: one per trial; front members are annotated with theirs.
        objective_names: one per objective, for the axes.
        maximize: per objective, True when higher is better (shown on the axes, orients the staircase).
        label_all: annotate every trial, the others in grey: the sweep report, read once the sweep is over, names
            each point; the MLflow front picture, refreshed after every trial, names the front only.
        markers: reference models, each drawn with its own symbol and labelled; with one objective a dashed
            horizontal line at its value.
        infeasible: trials that miss a `search.constraints` bound, drawn as light grey crosses, unlabelled: they
            are not candidates for the front.

    Raises:
        ValueError: when a marker has the wrong number of values.
    """
    _check_markers(markers, objective_names)
    xs, ys, x_name, y_name = _plane(points, objective_names, maximize)
    fig = Figure(figsize=(8, 6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=22, color=GREY, label=f"trials ({len(xs)})", zorder=2)
    if infeasible:
        ix, iy, _, _ = _plane(infeasible, objective_names, maximize)
        if len(objective_names) == 1:  # positions after the feasible trials'
            ix = [len(xs) + x for x in ix]
        ax.scatter(ix, iy, s=26, marker="x", color=INFEASIBLE, label=f"infeasible ({len(ix)})", zorder=1)
    if front_idx:
        fx, fy = [xs[i] for i in front_idx], [ys[i] for i in front_idx]
        ax.scatter(fx, fy, s=40, color=FRONT, label=f"Pareto front ({len(front_idx)})", zorder=3)
        if len(objective_names) == 2:
            sx, sy = zip(*_staircase(fx, fy, maximize[0]))
            ax.plot(sx, sy, color=FRONT, linewidth=1.2, zorder=1)
    named = range(len(xs)) if label_all else front_idx
    on_front = set(front_idx)
    spread = xs + ([m.values[0] for m in markers] if len(objective_names) > 1 else [])
    middle = (min(spread) + max(spread)) / 2 if spread else 0.0
    for n, i in enumerate(sorted(named, key=lambda i: xs[i])):  # inwards; neighbours above, then below
        right = xs[i] <= middle
        offset = (6 if right else -6, 6 if n % 2 == 0 else -12)
        ax.annotate(
            labels[i],
            (xs[i], ys[i]),
            xytext=offset,
            textcoords="offset points",
            ha="left" if right else "right",
            fontsize=7 if i in on_front else 6,
            color="black" if i in on_front else "#707070",
        )
    for marker, (symbol, _, color) in zip(markers, _marker_styles(markers)):
        if len(objective_names) == 1:
            ax.axhline(marker.values[0], color=color, linestyle="--", linewidth=1.2, label=marker.label, zorder=1)
            continue
        ax.scatter([marker.values[0]], [marker.values[1]], s=140, marker=symbol, color=color, edgecolors="white",
                   linewidths=0.8, label=marker.label, zorder=4)
        right = marker.values[0] <= middle  # labelled inwards, as the trials are
        ax.annotate(marker.label, (marker.values[0], marker.values[1]), xytext=(9 if right else -9, -4),
                    textcoords="offset points", ha="left" if right else "right", fontsize=7, color=color)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(_title(objective_names))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def pareto_html(
    points: Points,
    front_idx: Sequence[int],
    labels: Sequence[str],
    objective_names: Sequence[str],
    maximize: Sequence[bool],
    markers: Sequence[Marker] = (),
    infeasible: Points = (),
) -> str:
    """A self-contained HTML page: SVG scatter whose points show label and values on hover, and the front's table.

    Arguments as for `pareto_figure`; the markers also get a table of their own below the front's.
    """
    _check_markers(markers, objective_names)
    svg = _svg(points, front_idx, labels, objective_names, maximize, markers, infeasible)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in objective_names)
    rows = "".join(
        f"<tr><td>{html.escape(labels[i])}</td>" + "".join(f"<td>{_fmt(v)}</td>" for v in points[i]) + "</tr>"
        for i in front_idx
    )
    references = ""
    if markers:
        references = (
            "<h3>Reference points (not part of the front)</h3>"
            f"<table><tr><th>model</th>{head}</tr>"
            + "".join(f"<tr><td>{html.escape(m.label)}</td>" + "".join(f"<td>{_fmt(v)}</td>" for v in m.values)
                      + "</tr>" for m in markers)
            + "</table>"
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Pareto front</title><style>"
        "body{font-family:sans-serif;margin:1.5em}circle{cursor:pointer}circle:hover{stroke:#000;stroke-width:2}"
        "table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #ccc;padding:2px 8px;"
        "font-size:13px;text-align:left}</style></head><body>"
        f"<h2>{html.escape(_title(objective_names))}</h2>"
        f"<p>{len(points)} trials, {len(front_idx)} on the front (red)"
        + (f", {len(infeasible)} infeasible (light grey crosses, outside `search.constraints`)" if infeasible else "")
        + ". Hover a point for its values.</p>"
        f"{svg}<table><tr><th>trial</th>{head}</tr>{rows}</table>{references}</body></html>\n"
    )


def _plane(points: Points, names: Sequence[str], maximize: Sequence[bool]) -> tuple[list[float], list[float], str, str]:
    """x and y coordinates and axis titles: the first two objectives, or (position, value) for one objective."""
    axis = [f"{n} ({'max' if up else 'min'})" for n, up in zip(names, maximize)]
    if len(names) == 1:
        return list(range(len(points))), [float(p[0]) for p in points], "trial", axis[0]
    return [float(p[0]) for p in points], [float(p[1]) for p in points], axis[0], axis[1]


def _staircase(xs: Sequence[float], ys: Sequence[float], x_maximized: bool) -> list[tuple[float, float]]:
    """Vertices of the boundary of the region that 2D front points dominate, in order of increasing x.

    Between neighbours the boundary keeps the y of the point that dominates that stretch of x: the right-hand
    point when x is maximised (it covers everything to its left), the left-hand one when x is minimised.
    """
    front = sorted(zip(xs, ys))
    vertices = [front[0]]
    for (x0, y0), (x1, y1) in zip(front, front[1:]):
        vertices += [(x0, y1) if x_maximized else (x1, y0), (x1, y1)]
    return vertices


def _svg(
    points: Points,
    front_idx: Sequence[int],
    labels: Sequence[str],
    names: Sequence[str],
    maximize: Sequence[bool],
    markers: Sequence[Marker] = (),
    infeasible: Points = (),
) -> str:
    """Inline SVG scatter with axes, ticks, the front's staircase, a <title> tooltip per point, the markers, and
    the infeasible trials as crosses.

    The axes span the markers and the infeasible trials too, so a point far from the trials is still on the page.
    """
    width, height, pad = 720, 480, 60
    xs, ys, x_name, y_name = _plane(points, names, maximize)
    one = len(names) == 1
    ix, iy, _, _ = _plane(infeasible, names, maximize)
    if one:  # positions after the feasible trials'
        ix = [len(xs) + x for x in ix]
    marker_xs = [] if one else [m.values[0] for m in markers]
    marker_ys = [m.values[0 if one else 1] for m in markers]
    sx = _scale(xs + ix + marker_xs, pad, width - 20)
    sy = _scale(ys + iy + marker_ys, height - pad, 20)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11'>"]
    parts += _svg_axes(xs + ix + marker_xs, ys + iy + marker_ys, sx, sy, x_name, y_name, width, height, pad)
    for x, y in zip(map(sx, ix), map(sy, iy)):
        parts.append(f"<path class='infeasible' d='M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},"
                     f"{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}' stroke='{INFEASIBLE}' stroke-width='1.5'/>")
    if front_idx and len(names) == 2:
        line = _staircase([xs[i] for i in front_idx], [ys[i] for i in front_idx], maximize[0])
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        parts.append(f"<polyline points='{coords}' fill='none' stroke='{FRONT}' stroke-width='1.2'/>")
    on_front = set(front_idx)
    for i in sorted(range(len(xs)), key=lambda i: i in on_front):  # front drawn last, on top
        values = "&#10;".join(f"{html.escape(n)} = {_fmt(v)}" for n, v in zip(names, points[i]))
        color, radius = (FRONT, 6) if i in on_front else (GREY, 4)
        parts.append(
            f"<circle cx='{sx(xs[i]):.1f}' cy='{sy(ys[i]):.1f}' r='{radius}' fill='{color}'>"
            f"<title>{html.escape(labels[i])}&#10;{values}</title></circle>"
        )
    for marker, (_, shape, color) in zip(markers, _marker_styles(markers)):
        values = "&#10;".join(f"{html.escape(n)} = {_fmt(v)}" for n, v in zip(names, marker.values))
        tip = f"<title>{html.escape(marker.label)}&#10;{values}</title>"
        label = html.escape(marker.label)
        if one:
            y = sy(marker.values[0])
            parts.append(f"<g class='reference'><line x1='{pad}' y1='{y:.1f}' x2='{width - 20}' y2='{y:.1f}' "
                         f"stroke='{color}' stroke-dasharray='6 4' stroke-width='1.5'>{tip}</line>"
                         f"<text x='{width - 24}' y='{y - 4:.1f}' text-anchor='end' fill='{color}'>{label}</text></g>")
            continue
        x, y = sx(marker.values[0]), sy(marker.values[1])
        inwards = ("start", x + 10) if x <= (pad + width - 20) / 2 else ("end", x - 10)
        parts.append(f"<g class='reference'><polygon points='{_shape(shape, x, y)}' fill='{color}' stroke='#fff'>"
                     f"{tip}</polygon><text x='{inwards[1]:.1f}' y='{y + 4:.1f}' text-anchor='{inwards[0]}' "
                     f"fill='{color}'>{label}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def _marker_styles(markers: Sequence[Marker]) -> list[tuple[str, str, str]]:
    return [_MARKER_STYLES[i % len(_MARKER_STYLES)] for i in range(len(markers))]


def _check_markers(markers: Sequence[Marker], names: Sequence[str]) -> None:
    for marker in markers:
        if len(marker.values) != len(names):
            raise ValueError(f"marker {marker.label!r} has {len(marker.values)} values, expected {len(names)} "
                             f"(one per objective: {', '.join(names)})")


def _shape(shape: str, x: float, y: float, r: float = 8.0) -> str:
    """SVG polygon points of a cross, a five-pointed star or a diamond of radius `r` centred on (x, y)."""
    if shape == "cross":
        w = r / 3
        corners = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
                   (-w, -w)]
        # Turned by 45 degrees: an "X", as matplotlib's marker "X".
        corners = [((a - b) * 0.7071, (a + b) * 0.7071) for a, b in corners]
    elif shape == "star":
        corners = [((r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
                    -(r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
    else:
        corners = [(0, -r), (r, 0), (0, r), (-r, 0)]
    return " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in corners)


def _svg_axes(
    xs: Sequence[float],
    ys: Sequence[float],
    sx: Callable[[float], float],
    sy: Callable[[float], float],
    x_name: str,
    y_name: str,
    width: int,
    height: int,
    pad: int,
) -> list[str]:
    """Axis lines, round-number ticks on each axis, and the axis titles."""
    base_y, parts = height - pad, []
    parts.append(f"<line x1='{pad}' y1='{base_y}' x2='{width - 20}' y2='{base_y}' stroke='#444'/>")
    parts.append(f"<line x1='{pad}' y1='{base_y}' x2='{pad}' y2='20' stroke='#444'/>")
    for value in _ticks(xs):
        parts.append(f"<text x='{sx(value):.1f}' y='{base_y + 16}' text-anchor='middle'>{_fmt(value)}</text>")
    for value in _ticks(ys):
        parts.append(f"<text x='{pad - 6}' y='{sy(value) + 4:.1f}' text-anchor='end'>{_fmt(value)}</text>")
    parts.append(f"<text x='{(pad + width) / 2}' y='{height - 14}' text-anchor='middle'>{html.escape(x_name)}</text>")
    parts.append(
        f"<text transform='translate(14,{height / 2}) rotate(-90)' text-anchor='middle'>{html.escape(y_name)}</text>"
    )
    return parts


def _scale(values: Sequence[float], start: float, end: float) -> Callable[[float], float]:
    """Linear map from the data range (padded by 5%, or +-1 around a single value) onto [start, end] pixels."""
    low, high = _padded_range(values)
    return lambda v: start + (v - low) / (high - low) * (end - start)


def _padded_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    margin = (high - low) * 0.05 or 1.0
    return low - margin, high + margin


def _ticks(values: Sequence[float]) -> list[float]:
    """Up to six round tick values inside the plotted range, chosen as matplotlib chooses them."""
    low, high = _padded_range(values)
    return [float(t) for t in MaxNLocator(6).tick_values(low, high) if low <= t <= high]


def _short(value: str) -> str:
    """A number with 3 significant digits; anything else unchanged."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.3g}" if math.isfinite(number) else value


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _title(names: Sequence[str]) -> str:
    if len(names) > 2:
        return f"Pareto front, projected on {names[0]} x {names[1]} ({len(names)} objectives)"
    return "Pareto front: " + " vs ".join(names)
