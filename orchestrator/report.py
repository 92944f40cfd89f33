"""`clreg-sweep report SWEEP_DIR`: the sweep's results as tables and plots, read back from MLflow and the trials.

The child runs are the source of truth for every trial's final metrics (they survive resumes); each trial's
resolved config comes from its record (`SWEEP_DIR/trials/<id>/trial.json`, else the copy logged to its run), the
per-layer entanglement profiles, too large for MLflow metrics, from the trials' evaluation files under
`SWEEP_DIR/trials/<id>/seed-<s>/`, and the reference points (target before unlearning, oracle) from the parent
run's `reference/*` metrics, which the driver logged when the sweep started. This module reads them, computes the
front with the driver's `pareto.summarize`, decides which plots have something to show (and says in the report why
the others are not drawn), and assembles the report; `report_plots` draws the figures and `report_document` renders
Markdown and HTML.

Output: `SWEEP_DIR/report/` with `report.md` (image links relative to it), the PNGs, and with `html=True` a
self-contained `report.html`; the same files go to the sweep's MLflow parent run under `report/`.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from orchestrator import tracking
from orchestrator.candidates import TAG_INFEASIBLE_EPOCHS, parse_epochs, read_epoch_values
from orchestrator.constraints import TAG_CONSTRAINTS, TAG_FEASIBLE
from orchestrator.pareto import summarize
from orchestrator.pareto_artifacts import Marker, pareto_figure, trial_label
from orchestrator.references import References
from orchestrator.report_attacks import attack_table, relearn_points
from orchestrator.report_document import (
    Block,
    Bullets,
    Heading,
    Image,
    Paragraph,
    Table,
    number_cell,
    to_html,
    to_markdown,
)
from orchestrator.report_plots import (
    ENTANGLEMENT_MEASURES,
    CurvePanel,
    HeatmapPanel,
    Level,
    Profile,
    Series,
    Stat,
    entanglement_figure,
    heatmap_figure,
    mean_std,
    png_bytes,
    relearn_figure,
    tau_curves_figure,
)
from orchestrator.sweep import STATE_FILE, load_sweep_dir, resolve_space
from orchestrator.sweep_state import read_state
from orchestrator.trial_record import TrialRecord, read_record
from search_spaces.space import CLREG_SWITCH, SEED_PATH, SearchSpace, is_grid
from trainables.model.layers import LayerError, LayerSpec
from trainables.report_keys import TRIAL_RECORD_FILE, seed_dir

REPORT_DIR = "report"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
PARETO_PNG = "pareto.png"
TAU_PNG = "tau_curves.png"
HEATMAP_PNG = "layer_tau_heatmap.png"
ENTANGLEMENT_PNG = "entanglement.png"
RELEARN_PNG = "relearn.png"

# Grid parameters that are axes or groups of the ablation plots in their own right (or are averaged over).
_AXES = {SEED_PATH, "method.name", CLREG_SWITCH, "clreg.layer", "clreg.tau"}


@dataclass
class TrialRow:
    """One finished trial: its id, final metrics, resolved record, and the params its run logged (strings: the
    sampled point and the run record's `record.*`)."""

    trial_id: str
    metrics: dict[str, float]
    record: TrialRecord
    logged: dict[str, str] = field(default_factory=dict)
    feasible: bool = True  # False: the run is tagged `feasible=false` (it misses a `search.constraints` bound)
    run_id: str = ""
    infeasible_epochs: list[int] = field(default_factory=list)  # epoch candidates that miss a bound

    def point(self) -> FrontPoint:
        """The trial's final metrics as its one point for the front."""
        return FrontPoint(self, None, self.metrics, self.feasible)

    def feasible_epoch(self, epoch: int) -> bool:
        return epoch not in self.infeasible_epochs

    def searched(self, path: str) -> str:
        """The trial's sampled value of `path` as MLflow shows it, "" when the space did not sample it here."""
        return str(self.record.params[path]) if path in self.record.params else ""


@dataclass(frozen=True)
class FrontPoint:
    """A point for the front: a trial's final metrics, or (`search.candidates: epochs`) one evaluated epoch's."""

    row: TrialRow
    epoch: int | None
    metrics: Mapping[str, float]
    feasible: bool


def epoch_points(tracking_uri: str, rows: Sequence[TrialRow], names: Sequence[str]) -> list[FrontPoint]:
    """Every evaluated epoch of each trial that logged all objectives `names` (`orchestrator.candidates`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    return [FrontPoint(r, epoch, values, r.feasible_epoch(epoch)) for r in rows
            for epoch, values in read_epoch_values(client, r.run_id, names).items()]


@dataclass(frozen=True)
class Setting:
    """Where a trial sits in the ablation, from its full config: what it searched, else what the base fixed.

    `others` are the space's remaining grid parameters (name, value), e.g. `clreg.lambda` in a custom grid;
    `seeds` tells trials that differ only by seed apart.
    """

    method: str
    clreg: bool
    layer: str
    tau: float | None
    others: tuple[tuple[str, str], ...]
    seeds: str


@dataclass(frozen=True)
class ParetoPlot:
    """The arguments of `pareto_figure` for the report's Pareto plot."""

    points: list[list[float]]
    front: list[int]
    labels: list[str]
    names: list[str]
    maximize: list[bool]
    markers: list[Marker] = field(default_factory=list)
    infeasible: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True)
class EntanglementPlot:
    """The best CLReg trial's profile and its base method's without CLReg, and the 0-based CLReg layer."""

    trial_id: str
    baseline_id: str
    profiles: tuple[Profile, Profile]
    target_layer: int | None


@dataclass
class SweepReport:
    """What `sweep_report` wrote.

    `plots` maps each PNG's file name to the numbers its plot function received (`ParetoPlot`, a tuple of
    `CurvePanel` or `HeatmapPanel`, `EntanglementPlot`); `skipped` maps each plot not drawn to the reason, which the
    report states too.
    """

    markdown: str
    directory: Path
    plots: dict[str, Any]
    skipped: dict[str, str]
    files: list[str]


def finished_trials(tracking_uri: str, parent_run_id: str, trials_dir: Path) -> list[TrialRow]:
    """Every FINISHED child run of the sweep's parent run, oldest first, with the trial's record: its
    `trials_dir/<id>/trial.json`, else the copy logged to its run (a sweep directory whose trial outputs are gone).

    Raises:
        TrackingError: the store cannot be read (a few tries), has no such parent run, or a trial has no record.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = tracking.read(f"read the sweep's parent run {parent_run_id} (named in {STATE_FILE})", tracking_uri,
                           lambda: client.get_run(parent_run_id))
    runs = tracking.sweep_children(client, parent.info.experiment_id, parent_run_id, status="FINISHED",
                                   tries=tracking.READ_RETRIES)
    rows = []
    for run in runs:
        trial_id = run.data.tags.get(tracking.TAG_TRIAL, run.info.run_name)
        record = read_record(Path(trials_dir) / trial_id) or tracking.logged_trial_record(tracking_uri,
                                                                                          run.info.run_id)
        if record is None:
            raise tracking.TrackingError(f"trial {trial_id} has no record: neither {Path(trials_dir) / trial_id} "
                                         f"nor its MLflow run {run.info.run_id} holds {TRIAL_RECORD_FILE}")
        rows.append(TrialRow(trial_id, dict(run.data.metrics), record, dict(run.data.params),
                             feasible=run.data.tags.get(TAG_FEASIBLE) != "false", run_id=run.info.run_id,
                             infeasible_epochs=parse_epochs(run.data.tags.get(TAG_INFEASIBLE_EPOCHS, ""))))
    return rows


def parent_references(tracking_uri: str, parent_run_id: str) -> tuple[References, list[str]]:
    """The reference points the driver logged on the sweep's parent run (none for a run without them), and its
    resolved constraints (`clreg.constraints`, one bound per line; [] without constraints)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = tracking.read(f"read the sweep's parent run {parent_run_id}", tracking_uri,
                           lambda: client.get_run(parent_run_id))
    bounds = parent.data.tags.get(TAG_CONSTRAINTS, "")
    return References.from_run(parent.data.metrics, parent.data.tags), [b for b in bounds.splitlines() if b]


def sweep_report(sweep_dir: str | Path, html: bool = False) -> SweepReport:
    """Write the report of the sweep in `sweep_dir` to `sweep_dir/report/` and log it to the MLflow parent run.

    The directory is built beside the old one and swapped in whole, so a crash leaves the previous report (or
    none), never a half-written one, and plots that no longer apply do not linger. Only reads the store: a local
    store that is missing is refused (MLflow would create an empty one) and an unreachable one is given a few tries.

    Args:
        sweep_dir: a sweep directory (holds `sweep.yaml` and `sweep_state.json`).
        html: also write `report.html`, one self-contained page with the plots embedded.

    Raises:
        SweepError: when `sweep_dir` is not a sweep directory.
        SweepStateError: when its `sweep_state.json` is missing (the sweep never reached MLflow) or damaged.
        TrackingError: when the store is missing, does not answer, or refuses a read or the artifacts after a few
            tries.
    """
    root = Path(sweep_dir).resolve()
    cfg = load_sweep_dir(root)
    state = read_state(root)
    tracking.check_store_readable(state.tracking_uri)
    rows = finished_trials(state.tracking_uri, state.parent_run_id, root / "trials")
    space = resolve_space(cfg)
    grid_params = [p for p, spec in space.params.items() if is_grid(spec) and p != SEED_PATH]
    settings = {r.trial_id: _setting(r.record, [p for p in grid_params if p not in _AXES]) for r in rows}
    epochs = cfg.search.candidates == "epochs"
    points = (epoch_points(state.tracking_uri, rows, [m for m, _ in cfg.objective_modes]) if epochs
              else [r.point() for r in rows])
    sweep = _Sweep(rows, cfg.objective_modes, space, settings,
                   {r.trial_id: trial_label(_label_params(r, settings[r.trial_id]), r.trial_id) for r in rows},
                   *parent_references(state.tracking_uri, state.parent_run_id), points=points, epochs=epochs)
    out = _Draft([Heading(f"Sweep `{cfg.name}`", 1), Paragraph(_definitions_text(rows, cfg.base.eval.definitions))])

    front = _pareto_section(sweep, out)
    _tables(sweep, front, grid_params, out)
    ablation = _ablation_plots(sweep)
    for name, why in ablation.skipped.items():
        out.skip(name, why)
    if TAU_PNG in ablation.plots:
        panels = ablation.plots[TAU_PNG]
        out.image(TAU_PNG, panels, tau_curves_figure(panels), "objectives vs tau",
                  "Mean ± std over seeds at each τ, one line per group of CLReg trials; dashed: the same method "
                  "without CLReg (no τ), its ± std shaded.")
    if HEATMAP_PNG in ablation.plots:
        panels = ablation.plots[HEATMAP_PNG]
        out.image(HEATMAP_PNG, panels, heatmap_figure(panels, columns=len(sweep.objectives)), "layer x tau heatmap",
                  "Each cell: mean ± std over seeds of the CLReg trials at that layer and τ; brighter is better.")
    out.blocks += attack_table(rows, sweep.labels, cfg.base.attack)
    relearned = relearn_points(rows, sweep.labels, cfg.base.attack.metric)
    if relearned:
        out.image(RELEARN_PNG, relearned, relearn_figure(relearned, cfg.base.attack.metric),
                  "before vs after relearning",
                  "Each attacked trial's attack metric on the held-out half B before and after relearning on half A; "
                  "above the diagonal, relearning brought knowledge back.")
    elif cfg.base.attack.active:
        out.skip("before vs after relearning", "no finished trial has relearning figures")
    entangled = _entanglement_plot(root / "trials", sweep)
    if isinstance(entangled, str):
        out.skip("entanglement per layer", entangled)
    else:
        plot, text = entangled
        out.blocks += [Heading("Entanglement per layer"), Paragraph(text)]
        out.image(ENTANGLEMENT_PNG, plot, entanglement_figure(plot.profiles, plot.target_layer), "entanglement")
    if out.skipped:
        out.blocks += [Heading("Plots not drawn"), Bullets([f"{plot}: {why}" for plot, why in out.skipped.items()])]

    markdown = to_markdown(out.blocks)
    files = {REPORT_FILE: markdown.encode("utf-8"), **out.images}
    if html:
        files[HTML_FILE] = to_html(out.blocks, f"Sweep {cfg.name}", out.images).encode("utf-8")
    directory = _publish(root / REPORT_DIR, files)
    runs = tracking.SweepRuns(state.tracking_uri, state.experiment_id, state.parent_run_id)
    tracking.log_artifacts(runs, directory, REPORT_DIR, tries=tracking.READ_RETRIES)
    return SweepReport(markdown, directory, out.plots, out.skipped, sorted(files))


@dataclass(frozen=True)
class _Sweep:
    """What every section reads: the finished trials, the objectives, the space, each trial's setting and label."""

    rows: list[TrialRow]
    objectives: list[tuple[str, str]]
    space: SearchSpace
    settings: dict[str, Setting]
    labels: dict[str, str]
    references: References
    constraints: list[str]  # the resolved bounds, as the driver logged them
    points: list[FrontPoint]  # what the front is over: one per trial, or each trial's evaluated epochs
    epochs: bool  # search.candidates: epochs

    @property
    def names(self) -> list[str]:
        return [m for m, _ in self.objectives]


@dataclass
class _Draft:
    """The report being assembled: blocks in order, each drawn plot's data and PNG, each skipped plot's reason."""

    blocks: list[Block]
    plots: dict[str, Any] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def image(self, name: str, data: Any, figure: Figure, alt: str, caption: str | None = None) -> None:
        self.plots[name] = data
        self.images[name] = png_bytes(figure)
        self.blocks.append(Image(name, alt))
        if caption:
            self.blocks.append(Paragraph(caption))

    def skip(self, plot: str, why: str) -> None:
        self.skipped[plot] = why


def _definitions_text(rows: Sequence[TrialRow], configured: str) -> str:
    """Which metric formulas the trials were scored with, from their run records (`record.eval_definitions*`).

    Numbers under `open-unlearning` sit beside open-unlearning's published tables; under `exact` they differ where
    probabilities underflow (README, Metrics). A sweep whose trials disagree, or predate the record, says so.
    """
    recorded = sorted({(r.logged.get("record.eval_definitions"), r.logged.get("record.eval_definitions_version"))
                       for r in rows} - {(None, None)})
    if not recorded:
        return (f"Metric definitions: `eval.definitions: {configured}` as configured; the trials carry no run "
                "record of them.")
    listed = ", ".join(f"`{name}` ({version})" for name, version in recorded)
    mixed = " The trials were scored with different definitions: do not compare them." if len(recorded) > 1 else ""
    return f"Metric definitions: {listed} (`eval.definitions`; see the README's Metrics table).{mixed}"


def _pareto_section(sweep: _Sweep, out: _Draft) -> set[str]:
    """The summary line and the Pareto plot (and, with epoch candidates, the front's epochs); returns the ids of the
    trials on the front."""
    names, maximize = sweep.names, [mode == "max" for _, mode in sweep.objectives]
    # As on the MLflow parent run: only feasible points that report every objective take part in the front.
    summary = summarize([p.metrics for p in sweep.points], sweep.objectives,
                        feasible=[p.feasible for p in sweep.points])
    scored = [sweep.points[i] for i in summary.scored]
    points, front_idx, infeasible = summary.points, summary.front, summary.infeasible_points
    what = "epoch candidates" if sweep.epochs else "trials"
    each = "epoch candidate(s)" if sweep.epochs else "trial(s)"
    out.blocks.append(Paragraph(
        f"{len(sweep.rows)} finished trials; objectives: {', '.join(f'{m} ({mode})' for m, mode in sweep.objectives)}; "
        + (f"{len(sweep.points)} epoch candidates (`search.candidates: epochs`: every evaluated epoch of a trial is a "
           "point); " if sweep.epochs else "")
        + f"Pareto front: {len(front_idx)} {what}; hypervolume {summary.hypervolume:.4g} (reference "
        f"{summary.reference})."))
    if sweep.constraints:
        out.blocks.append(Paragraph(
            f"Constraints (`search.constraints`): {'; '.join(sweep.constraints)}. {len(infeasible)} finished "
            f"{each} miss one: they are greyed (× in the tables) and take no part in the front, its hypervolume or "
            "the best trials."))
    if not scored:
        reason = "is feasible and reports" if sweep.constraints else "reports"
        out.skip("Pareto plot", f"no finished trial {reason} every objective ({', '.join(names)})")
        _references_table(sweep, out)
        return set()
    markers = sweep.references.markers(names)
    labels = [sweep.labels[p.row.trial_id] + ("" if p.epoch is None else f" @ epoch {p.epoch}") for p in scored]
    plot = ParetoPlot(points, front_idx, labels, names, maximize, markers, infeasible)
    unplotted = len(sweep.points) - len(scored) - len(infeasible)
    out.blocks.append(Heading("Pareto front"))
    out.image(PARETO_PNG, plot,
              pareto_figure(points, front_idx, plot.labels, names, maximize, label_all=True, markers=markers,
                            infeasible=infeasible),
              "Pareto front", f"Every feasible finished {what[:-1]} that reports all objectives ({len(scored)}), the "
              "front in red." + (f" Infeasible ({len(infeasible)}): light grey crosses." if infeasible else "")
              + (f" {unplotted} trial(s) missing an objective are not shown." if unplotted else "")
              + (f" Reference points: {', '.join(m.label for m in markers)}." if markers else ""))
    if sweep.epochs:
        out.blocks += [Heading("Front candidates (trial, epoch)"),
                       Table(["trial", "epoch", *names],
                             [[scored[i].row.trial_id, str(scored[i].epoch), *(number_cell(v) for v in points[i])]
                              for i in front_idx])]
    _references_table(sweep, out)
    return {scored[i].row.trial_id for i in front_idx}


def _references_table(sweep: _Sweep, out: _Draft) -> None:
    """The target and oracle on the objectives: where a trial stands between "did nothing" and "never trained"."""
    refs, names = sweep.references, sweep.names
    out.blocks.append(Heading("Reference points"))
    if not refs.points and not refs.absent:
        out.blocks.append(Paragraph("The sweep's parent run has no `reference/*` metrics, so there are no reference "
                                    "points to show."))
        return
    out.blocks.append(Paragraph("The models unlearning starts from and aims at, scored like the trials; not part "
                                "of the Pareto front or its hypervolume."))
    if refs.points:
        out.blocks.append(Table(["reference point", *names],
                                [[p.label, *(number_cell(p.metrics.get(m)) for m in names)] for p in refs.points]))
    if refs.absent:
        out.blocks.append(Bullets([f"{name}: not shown, {why}" for name, why in refs.absent.items()]))
    unmoved = unmoved_objectives(sweep.rows, sweep.names, refs)
    if unmoved:
        out.blocks += [Paragraph("Trials that score exactly the target's value did not move that objective at all: "
                                 "there they are indistinguishable from the model before unlearning (more "
                                 "unlearning, e.g. `train.epochs` or `train.lr`, or a finer metric tells them "
                                 "apart)."), Bullets(unmoved)]


def unmoved_objectives(rows: Sequence[TrialRow], names: Sequence[str], refs: References) -> list[str]:
    """Per objective, how many finished trials score the target's own value (`References.at_target`)."""
    values = {m: [r.metrics[m] for r in rows if _finite(r.metrics.get(m))] for m in names}
    return [f"{m}: {same} of {total} finished trials score the target's {value:.4g}"
            for m, same, total, value in refs.at_target(values)]


def _tables(sweep: _Sweep, front: set[str], grid_params: list[str], out: _Draft) -> None:
    """Every trial, the best per objective and, for grid parameters, the ablation table (mean ± std over seeds)."""
    names, searched = sweep.names, list(sweep.space.params)
    legend = "* = on the Pareto front, × = infeasible" if sweep.constraints else "* = on the Pareto front"
    out.blocks += [Heading(f"Trials ({legend})"),
                   Table(["", "trial", *names, *searched],
                         [["*" if r.trial_id in front else "" if r.feasible else "×", r.trial_id,
                           *(_with_spread(r.metrics, m) for m in names), *(_param(r.searched(p)) for p in searched)]
                          for r in sweep.rows],
                         muted=frozenset(i for i, r in enumerate(sweep.rows) if not r.feasible))]
    best_rows = []
    for m, mode in sweep.objectives:
        candidates = [r for r in sweep.rows if r.feasible and _finite(r.metrics.get(m))]
        if candidates:
            best = (max if mode == "max" else min)(candidates, key=lambda r: r.metrics[m])
            best_rows.append([m, best.trial_id, number_cell(best.metrics[m]),
                              ", ".join(f"{p}={_param(best.searched(p))}" for p in searched)])
    out.blocks += [Heading("Best trial per objective"), Table(["objective", "trial", "value", "params"], best_rows)]
    if grid_params:
        out.blocks += [Heading(f"Ablation over {', '.join(grid_params)} (mean ± std over seeds)"),
                       Table([*grid_params, "n", *names], _ablation(sweep.rows, grid_params, names))]


@dataclass
class _Ablation:
    plots: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _ablation_plots(sweep: _Sweep) -> _Ablation:
    """The metric-vs-tau panels and the layer x tau heatmaps of a grid sweep, or why each is not drawn."""
    out = _Ablation()
    settings = sweep.settings
    sampled = [name for name, spec in sweep.space.params.items() if not is_grid(spec)]
    if sampled:
        why = (f"the space samples {', '.join(sampled)} instead of enumerating a grid, so no setting is repeated "
               "over seeds to average (the Pareto plot shows every trial; the tau-ablation and layer-ablation "
               "presets are grids)")
        out.skipped = {"metric vs tau": why, "layer x tau heatmap": why}
        return out
    on = [r for r in sweep.rows if settings[r.trial_id].clreg]
    off = [r for r in sweep.rows if not settings[r.trial_id].clreg]
    if not on:
        why = "no finished trial uses CLReg, so there is no tau or CLReg layer"
        out.skipped = {"metric vs tau": why, "layer x tau heatmap": why}
        return out
    taus = sorted({settings[r.trial_id].tau for r in on})
    layers = sorted({settings[r.trial_id].layer for r in on}, key=_layer_order)
    if len(taus) > 1:
        out.plots[TAU_PNG] = _tau_panels(on, off, sweep)
    else:
        out.skipped["metric vs tau"] = (f"tau is {taus[0]:.3g} in every CLReg trial (not a grid parameter of this "
                                        "space; the tau-ablation preset varies it)")
    if len(taus) * len(layers) > 1:
        out.plots[HEATMAP_PNG] = _heatmap_panels(on, sweep)
    else:
        out.skipped["layer x tau heatmap"] = (f"every CLReg trial has layer {layers[0]} and tau {taus[0]:.3g}: a "
                                              "single cell, whose values are in the ablation table")
    return out


def _tau_panels(on: list[TrialRow], off: list[TrialRow], sweep: _Sweep) -> tuple[CurvePanel, ...]:
    """Per objective: one series per (method, layer, other grid values) over tau; CLReg-off groups as levels."""
    lines = _groups(on, lambda s: (s.method, s.layer, s.others), sweep.settings)
    levels = _groups(off, lambda s: (s.method, s.others), sweep.settings)
    panels = []
    for metric, mode in sweep.objectives:
        series = []
        for (method, layer, others), members in lines.items():
            by_tau = _groups(members, lambda s: s.tau, sweep.settings)
            xs = sorted(by_tau)
            series.append(Series(_describe(f"{method} + CLReg {layer}", others), tuple(xs),
                                 tuple(_stat(by_tau[x], metric) for x in xs)))
        flat = [Level(_describe(f"{method} without CLReg", others), _stat(members, metric))
                for (method, others), members in levels.items()]
        panels.append(CurvePanel(f"{metric} ({mode})", tuple(series), tuple(flat)))
    return tuple(panels)


def _heatmap_panels(on: list[TrialRow], sweep: _Sweep) -> tuple[HeatmapPanel, ...]:
    """Per (method, other grid values) group, one layer x tau panel per objective (row-major)."""
    panels = []
    for (method, others), members in _groups(on, lambda s: (s.method, s.others), sweep.settings).items():
        cells = _groups(members, lambda s: (s.layer, s.tau), sweep.settings)
        layers = tuple(sorted({layer for layer, _ in cells}, key=_layer_order, reverse=True))  # top layer first
        taus = tuple(sorted({tau for _, tau in cells}))
        for metric, mode in sweep.objectives:
            panels.append(HeatmapPanel(_describe(f"{metric} ({mode}): {method} + CLReg", others), layers, taus,
                                       {key: _stat(trials, metric) for key, trials in cells.items()},
                                       mode == "max"))
    return tuple(panels)


def _entanglement_plot(trials_dir: Path, sweep: _Sweep) -> tuple[EntanglementPlot, str] | str:
    """The best CLReg trial (first objective) against its base method without CLReg, with the report's caption;
    or the sentence saying what is missing and how to get it.

    The best trial is taken among CLReg trials, since the plot asks what CLReg changed. The baseline is a finished
    trial of the same method with CLReg off, preferably with the same seed(s) so that only CLReg differs.
    """
    metric, mode = sweep.objectives[0]
    rows, settings, label = sweep.rows, sweep.settings, sweep.labels
    clreg = [r for r in rows if settings[r.trial_id].clreg and _finite(r.metrics.get(metric))]
    if not clreg:
        return f"no finished CLReg trial reports {metric}, so there is no best CLReg trial to profile"
    best = (max if mode == "max" else min)(clreg, key=lambda r: r.metrics[metric])
    chosen = settings[best.trial_id]
    best_profiles = _read_profiles(trials_dir / best.trial_id, best.record.seeds)
    candidates = [r for r in rows if not settings[r.trial_id].clreg and settings[r.trial_id].method == chosen.method]
    with_profile = [(r, p) for r in candidates if (p := _read_profiles(trials_dir / r.trial_id, r.record.seeds))]
    missing = []
    if not best_profiles:
        missing.append(f"the best CLReg trial on {metric}, `{best.trial_id}`, has no per-layer entanglement under "
                       f"{trials_dir / best.trial_id} (it was evaluated with `eval.layer_profile: false`, or its "
                       "evaluation files are gone): set `base.eval.layer_profile: true` (the default) in the sweep "
                       "file and run the sweep again")
    if not candidates:
        missing.append(f"no finished {chosen.method} trial without CLReg in this sweep to compare with: run the "
                       "method-compare preset, or add `clreg.enabled: {type: grid, values: [true, false]}` to the "
                       "space")
    elif not with_profile:
        missing.append(f"the {chosen.method} trials without CLReg ({', '.join(r.trial_id for r in candidates)}) have "
                       "no per-layer entanglement: set `base.eval.layer_profile: true` and run them again")
    if missing:
        return "; ".join(missing)
    same_seeds = [(r, p) for r, p in with_profile if settings[r.trial_id].seeds == chosen.seeds]
    baseline, baseline_profiles = (same_seeds or with_profile)[0]
    profiles = (_profile(f"{label[best.trial_id]} (trial {best.trial_id})", best_profiles),
                _profile(f"{label[baseline.trial_id]} (trial {baseline.trial_id})", baseline_profiles))
    plot = EntanglementPlot(best.trial_id, baseline.trial_id, profiles, best.record.target_layer)
    seeds = ("the same seed(s)" if same_seeds else
             f"seed(s) {settings[baseline.trial_id].seeds} (no {chosen.method} trial without CLReg has seed(s) "
             f"{chosen.seeds})")
    text = (f"Best CLReg trial on {metric} ({mode}): `{best.trial_id}` ({label[best.trial_id]}, {metric} = "
            f"{best.metrics[metric]:.4g}), against `{baseline.trial_id}` ({label[baseline.trial_id]}), the same "
            f"method without CLReg with {seeds}. Variance entanglement: lower = forget and retain less entangled; "
            "MK-MMD² and W2²: higher = more separated. The dotted line marks the CLReg layer"
            + (", error bars the std over the trial's seeds." if len(best_profiles) > 1 else "."))
    if any(not math.isfinite(s.mean) for p in profiles for stats in p.measures.values() for s in stats):
        text += " Gaps are non-finite values (variance entanglement is infinite where the two means coincide)."
    return plot, text


def _read_profiles(trial_dir: Path, seeds: Sequence[int]) -> list[list[dict]]:
    """The trial's `entanglement_profile`s, one per seed it trained (`seed-<s>/`) and evaluated."""
    from trainables.evaluation import load_eval
    from trainables.metrics.evaluate import AGGREGATES_FILE, PER_ITEM_FILE

    dirs = [d for s in seeds if ((d := seed_dir(trial_dir, s)) / AGGREGATES_FILE).is_file()
            and (d / PER_ITEM_FILE).is_file()]
    profiles = [load_eval(d).per_item.get("entanglement_profile") for d in dirs]
    return [p for p in profiles if p]


def _profile(label: str, profiles: list[list[dict]]) -> Profile:
    """Per-seed profiles averaged layer by layer."""
    by_layer = [{int(entry["layer"]): entry for entry in profile} for profile in profiles]
    layers = tuple(sorted({layer for seed in by_layer for layer in seed}))
    measures = {name: tuple(mean_std([_float(seed[layer].get(name)) for seed in by_layer if layer in seed])
                            for layer in layers) for name, _ in ENTANGLEMENT_MEASURES}
    return Profile(label, layers, measures)


def _setting(record: TrialRecord, others: list[str]) -> Setting:
    clreg = record.clreg_active
    return Setting(
        method=record.method,
        clreg=clreg,
        layer=str(record.value("clreg.layer")) if clreg else "",
        tau=float(record.value("clreg.tau")) if clreg else None,
        # A trial without CLReg has no clreg.* values that did anything: they would only split its group.
        others=tuple((p, str(record.value(p))) for p in others if clreg or not p.startswith("clreg.")),
        seeds=",".join(str(s) for s in record.seeds),
    )


def _label_params(row: TrialRow, setting: Setting) -> dict[str, str]:
    """The params `trial_label` reads, from the trial's record, so every point names method, tau, lambda and layer
    even when the space fixed them."""
    record = row.record
    full = {"method.name": setting.method, CLREG_SWITCH: str(setting.clreg)}
    if setting.clreg:
        full |= {"clreg.tau": str(record.value("clreg.tau")), "clreg.lambda": str(record.value("clreg.lambda")),
                 "clreg.layer": setting.layer}
    return {**full, **{p: row.searched(p) for p in record.params if p != CLREG_SWITCH}}


def _groups(rows: Iterable[TrialRow], key: Callable[[Setting], Any],
            settings: dict[str, Setting]) -> dict[Any, list[TrialRow]]:
    """Rows grouped by a function of their setting, in order of first appearance (the grid's order)."""
    groups: dict[Any, list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(key(settings[r.trial_id]), []).append(r)
    return groups


def _layer_order(layer: str | int) -> tuple[int, int]:
    """Sort key of `clreg.layer` values, bottom-up (`LayerSpec.order`); a value that is no layer sorts last."""
    try:
        return LayerSpec.from_param(layer).order
    except LayerError:
        return (2, 0)


def _stat(rows: Sequence[TrialRow], metric: str) -> Stat:
    return mean_std([r.metrics.get(metric, math.nan) for r in rows])


def _describe(head: str, others: tuple[tuple[str, str], ...]) -> str:
    return ", ".join([head, *(f"{name}={_param(value)}" for name, value in others)])


def _publish(final: Path, files: dict[str, bytes]) -> Path:
    """Write `files` into a fresh directory beside `final`, then swap it in for the old report in two renames.

    A crash before the swap leaves the old report untouched (and a hidden `.report-*` directory); between the two
    renames there is no report at all, never a mix of old and new files.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; reports are read by other users too
        for name, data in files.items():
            (staging / name).write_bytes(data)
            os.chmod(staging / name, 0o644)
        old = final.with_name(f".{final.name}-old-{os.getpid()}-{time.time_ns()}")
        if final.exists():
            final.rename(old)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def _ablation(rows: list[TrialRow], keys: list[str], metrics: list[str]) -> list[list[str]]:
    groups: dict[tuple[str, ...], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(tuple(r.searched(k) for k in keys), []).append(r)
    out = []
    for key, members in sorted(groups.items()):
        cells = []
        for m in metrics:
            vals = [r.metrics[m] for r in members if _finite(r.metrics.get(m))]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.fmean(vals):.4g} ± {sd:.2g}" if vals else "-")
        out.append([*key, str(len(members)), *cells])
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _float(v) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def _param(text: str) -> str:
    """A logged parameter (MLflow keeps strings), numbers shortened to 4 significant digits."""
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _with_spread(metrics: dict[str, float], name: str) -> str:
    """A trial's metric, as `mean ± std` when the trial averaged several seeds (it then logged `<name>_std`)."""
    std = metrics.get(f"{name}_std")
    spread = f" ± {std:.2g}" if _finite(std) and metrics.get("num_seeds", 1) > 1 else ""
    return number_cell(metrics.get(name)) + spread
