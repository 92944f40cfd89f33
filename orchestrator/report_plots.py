"""The plots of a sweep report: pure functions from numbers to matplotlib Figures (Agg) and PNG bytes.

`orchestrator.report` reads the runs, decides what is worth drawing and hands the numbers over in the small
dataclasses below; nothing here touches MLflow or the file system, so each plot can be rendered and checked from
plain numbers. Every figure is built with `Figure` + `FigureCanvasAgg` (no pyplot global state), as in
`pareto_artifacts`, so reports can be drawn on a machine without a display and from several threads.

Spreads are the sample standard deviation over seeds, shown as error bars (curves) or as text (heatmap cells);
a point or cell with one seed has a spread of 0, and its count `n` says so.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The per-layer entanglement measures of `trainables.metrics.representation.entanglement`, with the direction
# each is read in (shown on the axis so the plot can be read without the docstrings).
ENTANGLEMENT_MEASURES = (
    ("variance", "variance entanglement (lower = less entangled)"),
    ("mk_mmd", "MK-MMD² (higher = more separated)"),
    ("w2", "W2² of Gaussian fits (higher = more separated)"),
)
DPI = 110


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one metric over the `n` seeds of one setting."""

    mean: float
    std: float
    n: int


def mean_std(values: Sequence[float]) -> Stat:
    """The finite `values` summarised; NaN mean (drawn as a gap) when none is finite, std 0 for a single value.

    Non-finite values (a metric that was missing, an infinite variance entanglement) are left out rather than
    turning the whole mean into inf or NaN; `n` counts only the values kept.
    """
    kept = [float(v) for v in values if math.isfinite(v)]
    if not kept:
        return Stat(math.nan, math.nan, 0)
    return Stat(statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0, len(kept))


@dataclass(frozen=True)
class Series:
    """One line of a metric-vs-tau panel: a group of trials (e.g. one method and layer), one `Stat` per tau."""

    label: str
    x: tuple[float, ...]
    y: tuple[Stat, ...]


@dataclass(frozen=True)
class Level:
    """A horizontal reference line: the same metric without CLReg, which has no tau to be plotted against."""

    label: str
    y: Stat


@dataclass(frozen=True)
class CurvePanel:
    """One objective's metric-vs-tau panel."""

    metric: str
    series: tuple[Series, ...]
    levels: tuple[Level, ...] = ()


@dataclass(frozen=True)
class HeatmapPanel:
    """One objective on a layer x tau grid for one group of trials; a cell absent from `cells` had no trial.

    `layers` are in display order, top row first (the report puts the top layer there); `taus` left to right.
    """

    title: str
    layers: tuple[str, ...]
    taus: tuple[float, ...]
    cells: Mapping[tuple[str, float], Stat]
    higher_is_better: bool

    def matrix(self) -> np.ndarray:
        """Means as a `[layers, taus]` array, NaN where no trial ran (what `imshow` colours)."""
        return np.array([[self.cells[(layer, tau)].mean if (layer, tau) in self.cells else math.nan
                          for tau in self.taus] for layer in self.layers], dtype=float)


@dataclass(frozen=True)
class Profile:
    """Entanglement of one trial at every decoder layer: measure name -> one `Stat` (over seeds) per layer."""

    label: str
    layers: tuple[int, ...]
    measures: Mapping[str, tuple[Stat, ...]]


def tau_curves_figure(panels: Sequence[CurvePanel]) -> Figure:
    """One panel per objective: each series' mean against tau with ± std error bars, CLReg-off levels dashed."""
    fig, axes = _figure(1, len(panels), width=5.2, height=4.2)
    for ax, panel in zip(axes[0], panels):
        for series in panel.series:
            ax.errorbar(series.x, [s.mean for s in series.y], yerr=[s.std for s in series.y], marker="o",
                        markersize=4, capsize=3, linewidth=1.3, label=series.label)
        for n, level in enumerate(panel.levels):
            line = ax.axhline(level.y.mean, linestyle="--", linewidth=1.1, color=f"C{len(panel.series) + n}",
                              label=f"{level.label} (± std shaded)")
            ax.axhspan(level.y.mean - level.y.std, level.y.mean + level.y.std, color=line.get_color(), alpha=0.12)
        taus = sorted({x for series in panel.series for x in series.x})
        ax.set_xticks(taus, [f"{t:.3g}" for t in taus])
        ax.set_xlabel("CLReg temperature τ")
        ax.set_ylabel(panel.metric)
        ax.set_title(f"{panel.metric} vs τ (mean ± std over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def heatmap_figure(panels: Sequence[HeatmapPanel], columns: int) -> Figure:
    """Panels in rows of `columns` (one per objective); each cell coloured by its mean, annotated mean ± std.

    The colour scale is reversed for objectives that are minimised, so brighter always means better.
    """
    rows = math.ceil(len(panels) / columns)
    cell_rows = max(len(p.layers) for p in panels)
    cell_cols = max(len(p.taus) for p in panels)
    fig, axes = _figure(rows, columns, width=1.1 * cell_cols + 2.6, height=0.7 * cell_rows + 1.9)
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_visible(False)
            continue
        panel = panels[index]
        values = panel.matrix()
        image = ax.imshow(values, cmap="viridis" if panel.higher_is_better else "viridis_r", aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.85)
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for (r, layer), (c, tau) in ((rc, tc) for rc in enumerate(panel.layers) for tc in enumerate(panel.taus)):
            stat = panel.cells.get((layer, tau))
            if stat is None or not math.isfinite(stat.mean):
                ax.text(c, r, "no trial" if stat is None else "-", ha="center", va="center", fontsize=7)
                continue
            # Dark text on the bright end of viridis, light text on the dark end.
            bright = (stat.mean >= middle) == panel.higher_is_better
            ax.text(c, r, f"{stat.mean:.3g}\n± {stat.std:.2g}", ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")
        ax.set_xticks(range(len(panel.taus)), [f"{t:.3g}" for t in panel.taus])
        ax.set_yticks(range(len(panel.layers)), list(panel.layers))
        ax.set_xlabel("CLReg temperature τ")
        ax.set_ylabel("CLReg layer")
        ax.set_title(panel.title, fontsize=9)
    fig.tight_layout()
    return fig


def entanglement_figure(profiles: Sequence[Profile], target_layer: int | None) -> Figure:
    """One panel per entanglement measure, one line per profile (± std over seeds), the CLReg layer marked.

    Non-finite values (variance entanglement is infinite where the forget and retain means coincide) are drawn
    as gaps rather than dropped silently from a line that would then join its neighbours.
    """
    fig, axes = _figure(1, len(ENTANGLEMENT_MEASURES), width=4.6, height=3.8)
    for ax, (measure, title) in zip(axes[0], ENTANGLEMENT_MEASURES):
        for profile in profiles:
            stats = profile.measures[measure]
            ax.errorbar(profile.layers, [s.mean for s in stats], yerr=[s.std for s in stats], marker="o",
                        markersize=4, capsize=3, linewidth=1.3, label=profile.label)
        if target_layer is not None:
            ax.axvline(target_layer, color="#888888", linestyle=":", linewidth=1.2, label="CLReg layer")
        layers = sorted({layer for p in profiles for layer in p.layers})
        ax.set_xticks(layers)
        ax.set_xlabel("decoder layer (0 = first)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (kept in memory: the report writes them atomically and inlines them in HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _figure(rows: int, columns: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """An Agg figure of `rows` x `columns` panels of `width` x `height` inches each, axes as a 2D array."""
    fig = Figure(figsize=(width * columns, height * rows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    return fig, axes


@dataclass(frozen=True)
class RelearnPoint:
    """One attacked trial: the attack metric on the held-out half B before and after relearning on half A."""

    label: str
    clreg: bool
    before: float
    after: float


def relearn_figure(points: Sequence[RelearnPoint], metric: str) -> Figure:
    """Before (x) against after (y) relearning, CLReg trials as dots and the others as crosses, with the diagonal
    where nothing came back: the higher above it a trial sits, the more of what it forgot relearning restored."""
    fig, axes = _figure(1, 1, width=5.2, height=4.6)
    ax = axes[0][0]
    for clreg, marker, name in ((True, "o", "with CLReg"), (False, "x", "without CLReg")):
        chosen = [p for p in points if p.clreg == clreg]
        if chosen:
            ax.scatter([p.before for p in chosen], [p.after for p in chosen], marker=marker, s=36, label=name)
            for p in chosen:
                ax.annotate(p.label, (p.before, p.after), fontsize=6, xytext=(3, 3), textcoords="offset points")
    values = [v for p in points for v in (p.before, p.after)]
    low, high = min(values), max(values)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#888888", linestyle=":", linewidth=1.2,
            label="no change")
    ax.set_xlabel(f"{metric} on half B, before relearning")
    ax.set_ylabel(f"{metric} on half B, after relearning on half A")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
