"""`clreg-sweep report` on sweeps built from real parts, without Ray: a SQLite MLflow store filled through
`orchestrator.tracking` as the sweep driver fills it, trial configs sampled from the real search spaces, each
trial's record built, written and logged as the driver and the tracker do (tags from `describe_trial`), the sweep
directory as `_create_sweep_dir` writes it, and trial evaluations written by `save_eval`.

One store per module (creating the database takes seconds); each test builds its own sweep in it.
"""

from __future__ import annotations

import base64
import math
import re
import statistics
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from mlflow import MlflowClient
from optuna.trial import FixedTrial

from orchestrator import cli
from orchestrator.pareto import pareto_front
from orchestrator.references import ORACLE_LOG_LABEL, TARGET_LABEL, ReferencePoint, References
from orchestrator.report import (
    ENTANGLEMENT_PNG,
    HEATMAP_PNG,
    HTML_FILE,
    PARETO_PNG,
    RELEARN_PNG,
    REPORT_DIR,
    REPORT_FILE,
    TAU_PNG,
    EntanglementPlot,
    sweep_report,
)
from orchestrator.sweep import _create_sweep_dir, resolve_space, sweep_paths
from orchestrator.sweep_config import SweepConfig
from orchestrator.tracking import (
    child_run,
    default_tracking_uri,
    finish_child,
    log_metrics,
    log_trial_record,
    open_sweep,
    set_tags,
)
from orchestrator.trial_record import TrialRecord, build_record, describe_trial, write_record
from trainables.atomic_files import write_json_atomic
from trainables.metrics.evaluate import EvalResult, save_eval

NUM_LAYERS = 8  # the tiny model's depth (the default trial config)
OBJECTIVES = ("forget_quality", "model_utility")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(autouse=True)
def _sync_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def profile(shift: float, num_layers: int = NUM_LAYERS) -> list[dict]:
    """An `entanglement_profile` as the metric stores it: one dict per decoder layer, bottom to top."""
    return [{"layer": i, "variance": 2.0 + shift - 0.1 * i, "mk_mmd": 0.05 * i + shift, "w2": 0.5 + shift * i}
            for i in range(num_layers)]


class Sweep:
    """A sweep directory, parent run and finished child runs, as `run_sweep` and `SweepTracker` leave them."""

    def __init__(self, store: Path, name: str, space: str | dict, base: dict | None = None,
                 trial_seeds: list[int] | None = None) -> None:
        self.cfg = SweepConfig.model_validate({
            "name": name, "base": base or {}, "space": space,
            "search": {"sampler": "random", "trial_seeds": trial_seeds},
            "storage": {"dir": str(store / "sweeps")},
            "mlflow": {"tracking_uri": default_tracking_uri(store)},
        })
        self.paths = sweep_paths(self.cfg)
        self.space = resolve_space(self.cfg)
        self.base = self.cfg.base.model_dump(mode="json", by_alias=True)
        self.records: dict[str, TrialRecord] = {}
        _create_sweep_dir(self.paths, self.cfg)
        self.runs = open_sweep(self.cfg.mlflow.tracking_uri, name, name, self.cfg.model_dump(mode="json",
                                                                                                by_alias=True))
        write_json_atomic(self.paths.state_file, {
            "parent_run_id": self.runs.parent_run_id, "experiment_id": self.runs.experiment_id,
            "tracking_uri": self.cfg.mlflow.tracking_uri, "target_dir": str(store / "target")})

    @property
    def root(self) -> Path:
        return self.paths.root

    def trial(self, trial_id: str, point: dict, metrics: dict, status: str = "FINISHED",
              logged: dict | None = None) -> dict:
        """Log one trial whose Optuna point is `point` (the space adds its fixed values), with its record in the
        trial's folder and on its run; `logged` adds params (a run record). Returns its params."""
        params = self.space.sample(FixedTrial(point), NUM_LAYERS)
        record = build_record(trial_id, self.base, params, self.space.repeat_seeds, NUM_LAYERS)
        self.records[trial_id] = record
        write_record(record, self.root / "trials" / trial_id)
        run_id = child_run(self.runs, trial_id, {**params, **(logged or {})}, describe_trial(record))
        log_trial_record(self.runs, run_id, record)
        log_metrics(self.runs, run_id, metrics)
        finish_child(self.runs, run_id, status, None if status == "FINISHED" else "crashed")
        return params

    def evaluation(self, trial_id: str, entanglement: list[dict] | None, seed: int | None = None) -> None:
        """The evaluation files a trial's rank 0 writes under `seed-<s>/` (default: the trial's one seed)."""
        (only,) = [seed] if seed is not None else self.records[trial_id].seeds
        out = self.root / "trials" / trial_id / f"seed-{only}"
        per_item = {"forget_truth_ratio": [0.5, 0.6]}
        if entanglement is not None:
            per_item["entanglement_profile"] = entanglement
        save_eval(EvalResult({"forget_quality": 0.5, "entanglement_profile": None}, per_item), out)


def check_png(path: Path) -> np.ndarray:
    """A readable PNG of a sensible size that is not blank (several colours, real contrast)."""
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert 300 <= width <= 5000 and 250 <= height <= 5000, (width, height)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 20 and rgb.std() > 0.05
    return pixels


def image_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def tau_metrics(tau: float, seed: int) -> dict[str, float]:
    return {"forget_quality": 0.1 + 0.5 * tau + 0.03 * seed, "model_utility": 0.9 - 0.3 * tau + 0.01 * seed ** 2,
            "train/loss": 1.0}


def test_tau_ablation_plots_means_and_spreads_over_seeds(store: Path) -> None:
    # The layer is fixed by the sweep's base, not searched: it must still label the heatmap's row.
    sweep = Sweep(store, "tau-abl", "tau-ablation", base={"clreg": {"layer": "last-2"}}, trial_seeds=[0, 1])
    taus = [0.1, 0.3, 0.5, 0.7, 0.9]
    for n, (tau, seed) in enumerate((t, s) for t in taus for s in (0, 1)):
        sweep.trial(f"t{n:02d}", {"clreg.tau": tau, "train.seed": seed}, tau_metrics(tau, seed))
    sweep.trial("crashed", {"clreg.tau": 0.1, "train.seed": 0}, {"forget_quality": 5.0}, status="FAILED")
    # The trials' records, not the sweep file's base, say what they trained: a base edited afterwards changes
    # nothing in the report.
    edited = sweep.paths.sweep_file.read_text().replace("layer: last-2", "layer: last-5")
    assert edited != sweep.paths.sweep_file.read_text()
    sweep.paths.sweep_file.write_text(edited)

    report = sweep_report(sweep.root)

    expected = {m: {t: [tau_metrics(t, s)[m] for s in (0, 1)] for t in taus} for m in OBJECTIVES}
    curves = report.plots[TAU_PNG]
    assert [p.metric for p in curves] == ["forget_quality (max)", "model_utility (max)"]
    for panel, metric in zip(curves, OBJECTIVES):
        (series,) = panel.series  # one method, one layer: one line
        assert series.label == "simnpo + CLReg last-2" and panel.levels == ()
        assert series.x == tuple(taus)
        assert [s.n for s in series.y] == [2] * 5
        assert [s.mean for s in series.y] == pytest.approx([statistics.fmean(expected[metric][t]) for t in taus])
        assert [s.std for s in series.y] == pytest.approx([statistics.stdev(expected[metric][t]) for t in taus])
    assert curves[1].series[0].y[0].std == pytest.approx(0.01 / math.sqrt(2))  # not 0: the seeds differ

    heatmaps = report.plots[HEATMAP_PNG]
    assert [h.title for h in heatmaps] == [f"{m} (max): simnpo + CLReg" for m in OBJECTIVES]
    for heatmap, metric in zip(heatmaps, OBJECTIVES):
        assert heatmap.layers == ("last-2",) and heatmap.taus == tuple(taus) and heatmap.higher_is_better
        cell = heatmap.cells[("last-2", 0.7)]
        assert (cell.mean, cell.std, cell.n) == pytest.approx(
            (statistics.fmean(expected[metric][0.7]), statistics.stdev(expected[metric][0.7]), 2))
        assert heatmap.matrix().shape == (1, 5)

    pareto = report.plots[PARETO_PNG]
    assert len(pareto.points) == 10  # the FAILED trial is not a result
    assert pareto.front == pareto_front(pareto.points, maximize=[True, True])
    assert "simnpo τ=0.1 λ=1 last-2 seed=0" in pareto.labels  # lambda and layer from the base config
    assert len(set(pareto.labels)) == 10

    folder = sweep.root / REPORT_DIR
    assert report.directory == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted([REPORT_FILE, PARETO_PNG, TAU_PNG, HEATMAP_PNG])
    for png in (PARETO_PNG, TAU_PNG, HEATMAP_PNG):
        check_png(folder / png)
    markdown = (folder / REPORT_FILE).read_text()
    assert markdown == report.markdown
    assert sorted(image_links(markdown)) == sorted([PARETO_PNG, TAU_PNG, HEATMAP_PNG])
    assert "## Ablation over clreg.tau (mean ± std over seeds)" in markdown
    fq = expected["forget_quality"][0.3]
    assert f"| 0.3 | 2 | {statistics.fmean(fq):.4g} ± {statistics.stdev(fq):.2g} |" in markdown
    # Neither a profile nor a CLReg-off trial: the comparison is skipped, and the report says what would give one.
    assert ENTANGLEMENT_PNG not in report.plots
    why = report.skipped["entanglement per layer"]
    assert f"- entanglement per layer: {why}" in markdown
    assert "has no per-layer entanglement" in why and "`base.eval.layer_profile: true`" in why
    assert "no finished simnpo trial without CLReg in this sweep" in why and "method-compare preset" in why


def test_layer_ablation_takes_tau_from_the_base_and_skips_tau_curves(store: Path) -> None:
    sweep = Sweep(store, "layer-abl", "layer-ablation", base={"clreg": {"tau": 0.7}}, trial_seeds=[0, 1])
    value = {"last-1": 0.8, "last-4": 0.5, "last-7": 0.2}
    for n, (layer, seed) in enumerate((la, s) for la in value for s in (0, 1)):
        sweep.trial(f"l{n}", {"clreg.layer": layer, "train.seed": seed},
                    {"forget_quality": value[layer] + 0.1 * seed, "model_utility": 0.5})

    # The record logged to each run is the trial's file, and stands in for it when the trial's outputs are gone.
    client = MlflowClient(sweep.runs.tracking_uri)
    trial_runs = client.search_runs([sweep.runs.experiment_id],
                                    f"tags.`mlflow.parentRunId` = '{sweep.runs.parent_run_id}'")
    assert len(trial_runs) == 6
    for run in trial_runs:
        trial_dir = sweep.root / "trials" / run.data.tags["clreg.trial_id"]
        logged = Path(client.download_artifacts(run.info.run_id, "trial.json", str(store / "downloads")))
        assert logged.read_text() == (trial_dir / "trial.json").read_text()
        (trial_dir / "trial.json").unlink()

    report = sweep_report(sweep.root)

    assert TAU_PNG not in report.plots
    assert report.skipped["metric vs tau"].startswith("tau is 0.7 in every CLReg trial")
    heatmap = report.plots[HEATMAP_PNG][0]
    assert heatmap.layers == ("last-1", "last-4", "last-7") and heatmap.taus == (0.7,)  # top layer first
    assert heatmap.matrix()[:, 0] == pytest.approx([0.85, 0.55, 0.25])
    check_png(report.directory / HEATMAP_PNG)
    assert "- metric vs tau: tau is 0.7 in every CLReg trial" in report.markdown
    assert "The sweep's parent run has no `reference/*` metrics" in report.markdown


def test_sampled_sweep_has_no_ablation_plots_and_profiles_average_the_seeds(store: Path) -> None:
    space = {"parameters": {"clreg.enabled": {"type": "categorical", "choices": [True, False]},
                            "clreg.tau": {"type": "float", "low": 0.1, "high": 1.0}},
             "seeds": [0, 1]}
    sweep = Sweep(store, "sampled", space)
    points = {"on-a": ({"clreg.enabled": True, "clreg.tau": 0.25}, 0.9),
              "on-b": ({"clreg.enabled": True, "clreg.tau": 0.6}, 0.4),
              "off": ({"clreg.enabled": False}, 0.3)}
    for trial_id, (point, fq) in points.items():
        # A trial of a sampled space reports the means over its seeds, with the spread and the count.
        sweep.trial(trial_id, point, {"forget_quality": fq, "forget_quality_std": 0.05, "model_utility": 1 - fq,
                                      "model_utility_std": 0.0, "num_seeds": 2})
    for seed in (0, 1):
        sweep.evaluation("on-a", profile(0.1 * seed), seed=seed)
        sweep.evaluation("on-b", profile(5.0), seed=seed)
        sweep.evaluation("off", profile(1.0 + seed), seed=seed)

    report = sweep_report(sweep.root)

    assert TAU_PNG not in report.plots and HEATMAP_PNG not in report.plots
    why = report.skipped["metric vs tau"]
    assert why == report.skipped["layer x tau heatmap"]
    assert why.startswith("the space samples clreg.enabled, clreg.tau instead of enumerating a grid")
    assert f"- metric vs tau: {why}" in report.markdown and "## Ablation" not in report.markdown
    assert "| * | on-a | 0.9 ± 0.05 |" in report.markdown  # a trial's own spread over its seeds

    plot = report.plots[ENTANGLEMENT_PNG]
    assert isinstance(plot, EntanglementPlot)
    assert (plot.trial_id, plot.baseline_id, plot.target_layer) == ("on-a", "off", NUM_LAYERS - 1)  # last-1
    clreg, baseline = plot.profiles
    assert clreg.layers == tuple(range(NUM_LAYERS))
    at3 = [profile(0.0)[3]["mk_mmd"], profile(0.1)[3]["mk_mmd"]]
    assert (clreg.measures["mk_mmd"][3].mean, clreg.measures["mk_mmd"][3].std) == pytest.approx(
        (statistics.fmean(at3), statistics.stdev(at3)))
    assert baseline.measures["w2"][2].mean == pytest.approx(statistics.fmean([p[2]["w2"] for p in (profile(1.0),
                                                                                                     profile(2.0))]))
    assert (clreg.label, baseline.label) == ("simnpo τ=0.25 λ=1 last-1 (trial on-a)", "simnpo no-CLReg (trial off)")
    check_png(report.directory / ENTANGLEMENT_PNG)
    assert "Best CLReg trial on forget_quality (max): `on-a`" in report.markdown


def test_method_compare_entanglement_present_then_absent(store: Path) -> None:
    sweep = Sweep(store, "methods", "method-compare", trial_seeds=[0, 1])
    combos = [g for g in sweep.space.grid(NUM_LAYERS) if g]
    score = {"gradascent": 0.1, "graddiff": 0.3, "npo": 0.8, "simnpo": 0.5, "undial": 0.2, "pdu": 0.4, "wga": 0.35,
             "satimp": 0.45, "ceu": 0.25, "rmu": 0.55, "dpo": 0.15}
    ids = {}
    for n, combo in enumerate(combos):
        method, on, seed = combo["method.name"], combo["clreg.enabled"], combo["train.seed"]
        trial_id = f"m{n:02d}"
        ids[(method, on, seed)] = trial_id
        fq = score[method] + (0.1 if on else 0.0) + 0.01 * seed
        if method == "dpo" and not on:
            fq = 0.0123  # exactly the target's: these two trials did not move forget quality
        sweep.trial(trial_id, combo, {"forget_quality": fq, "model_utility": 1.0 - fq})
        sweep.evaluation(trial_id, profile(0.2 * on + 0.01 * seed))
    best, baseline = ids[("npo", True, 1)], ids[("npo", False, 1)]
    # As `run_sweep` logs them when the sweep starts; the oracle log has no utility, so it cannot be drawn.
    refs = References((ReferencePoint("target", TARGET_LABEL, {"forget_quality": 0.0123, "model_utility": 0.91}),
                       ReferencePoint("oracle", ORACLE_LOG_LABEL, {"forget_quality": 1.0, "privleak": 0.0})), {})
    log_metrics(sweep.runs, sweep.runs.parent_run_id, refs.metrics())
    set_tags(sweep.runs, sweep.runs.parent_run_id, refs.tags())

    report = sweep_report(sweep.root, html=True)

    pareto = report.plots[PARETO_PNG]
    assert [(m.label, m.values) for m in pareto.markers] == [(TARGET_LABEL, (0.0123, 0.91))]
    assert pareto.front == pareto_front(pareto.points, maximize=[True, True])  # the trials' front alone
    assert "## Reference points" in report.markdown
    assert "| reference point | forget_quality | model_utility |" in report.markdown
    assert f"| {TARGET_LABEL} | 0.0123 | 0.91 |" in report.markdown
    assert f"| {ORACLE_LOG_LABEL} | 1 | - |" in report.markdown
    assert "Trials that score exactly the target's value did not move that objective" in report.markdown
    assert "- forget_quality: 2 of 44 finished trials score the target's 0.0123\n" in report.markdown
    assert "model_utility: " not in report.markdown.split("did not move that objective")[1].split("##")[0]

    # tau and layer are the base's defaults in every trial: nothing to draw against them.
    assert report.skipped["metric vs tau"].startswith("tau is 0.5 in every CLReg trial")
    assert report.skipped["layer x tau heatmap"].startswith("every CLReg trial has layer last-1 and tau 0.5")
    plot = report.plots[ENTANGLEMENT_PNG]
    assert (plot.trial_id, plot.baseline_id) == (best, baseline)  # same method, CLReg off, same seed
    assert plot.profiles[0].measures["variance"][0].mean == pytest.approx(profile(0.21)[0]["variance"])
    assert plot.profiles[1].measures["variance"][0].mean == pytest.approx(profile(0.01)[0]["variance"])
    assert "the same method without CLReg with the same seed(s)" in report.markdown
    check_png(report.directory / ENTANGLEMENT_PNG)

    page = (report.directory / HTML_FILE).read_text()
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page)  # a payload may spell "http" by chance
    assert "<script" not in text.lower() and "<link" not in text.lower() and "http" not in text
    sources = re.findall(r"""\b(?:src|href)\s*=\s*['"]([^'"]*)""", page)
    assert len(sources) == len(image_links(report.markdown)) == 2  # Pareto + entanglement
    for source, name in zip(sources, image_links(report.markdown)):
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]) == (report.directory / name).read_bytes()
    assert "<table>" in page and "Plots not drawn" in page
    assert f"<td>{TARGET_LABEL}</td><td>0.0123</td><td>0.91</td>" in page

    client = MlflowClient(sweep.runs.tracking_uri)
    logged = {a.path for a in client.list_artifacts(sweep.runs.parent_run_id, REPORT_DIR)}
    assert logged == {f"{REPORT_DIR}/{name}" for name in (REPORT_FILE, HTML_FILE, PARETO_PNG, ENTANGLEMENT_PNG)}

    # Without the best trial's profile the comparison is skipped with what to do, and the stale PNG is gone.
    (sweep.root / "trials" / best / "seed-1" / "eval_per_item.json").write_text('{"forget_truth_ratio": [0.5]}')
    again = sweep_report(sweep.root)
    assert ENTANGLEMENT_PNG not in again.plots
    assert not (again.directory / ENTANGLEMENT_PNG).exists() and not (again.directory / HTML_FILE).exists()
    why = again.skipped["entanglement per layer"]
    assert f"`{best}`, has no per-layer entanglement" in why and "`base.eval.layer_profile: true`" in why
    assert f"- entanglement per layer: {why}" in again.markdown
    assert [p.name for p in sweep.root.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_cli_report_writes_the_report_directory_and_logs_it(store: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = Sweep(store, "cli", "tau-ablation", trial_seeds=[0])
    for n, tau in enumerate([0.1, 0.5, 0.9]):
        sweep.trial(f"c{n}", {"clreg.tau": tau, "train.seed": 0}, tau_metrics(tau, 0))

    assert cli.main(["report", str(sweep.root), "--html"]) == 0

    out = capsys.readouterr()
    folder = sweep.root / REPORT_DIR
    assert out.out.startswith("# Sweep `cli`") and str(folder) in out.err
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([REPORT_FILE, HTML_FILE, PARETO_PNG, TAU_PNG, HEATMAP_PNG])
    logged = {a.path for a in MlflowClient(sweep.runs.tracking_uri).list_artifacts(sweep.runs.parent_run_id,
                                                                                    REPORT_DIR)}
    assert logged == {f"{REPORT_DIR}/{name}" for name in names}
    series = sweep_report(sweep.root).plots[TAU_PNG][0].series[0]
    assert [s.std for s in series.y] == [0.0, 0.0, 0.0] and [s.n for s in series.y] == [1, 1, 1]


def test_report_of_a_directory_that_is_no_sweep_exits_2(tmp_path: Path) -> None:
    assert cli.main(["report", str(tmp_path)]) == cli.EXIT_INVALID


def test_report_states_the_metric_definitions_the_trials_were_scored_with(store: Path) -> None:
    sweep = Sweep(store, "definitions-stated", "clreg-default", trial_seeds=[0])
    records = [("open-unlearning", "open-unlearning@d3d7cf9"), ("exact", "exact@1")]
    for i, (name, version) in enumerate(records):
        sweep.trial(f"t{i}", {"clreg.tau": 0.5, "clreg.lambda": 1.0, "clreg.layer": "last-1", "train.lr": 1e-4},
                    {"forget_quality": 0.2 + 0.1 * i, "model_utility": 0.5},
                    logged={"record.eval_definitions": name, "record.eval_definitions_version": version})
    markdown = sweep_report(sweep.root).markdown
    assert "Metric definitions: `exact` (exact@1), `open-unlearning` (open-unlearning@d3d7cf9)" in markdown
    assert "scored with different definitions: do not compare them" in markdown

    unrecorded = Sweep(store, "definitions-unrecorded", "clreg-default", trial_seeds=[0])
    unrecorded.trial("u0", {"clreg.tau": 0.5, "clreg.lambda": 1.0, "clreg.layer": "last-1", "train.lr": 1e-4},
                     {"forget_quality": 0.3, "model_utility": 0.5})
    assert ("Metric definitions: `eval.definitions: open-unlearning` as configured; the trials carry no run record"
            in sweep_report(unrecorded.root).markdown)


def test_attack_section_lists_the_attacked_trials_and_plots_before_vs_after_relearning(store: Path) -> None:
    """A front attack attacked two of three trials: the table has those two, the plot their B figures, CLReg on/off
    told apart; a trial without figures is left out, not shown as zeros."""
    space = {"parameters": {"clreg.enabled": {"type": "categorical", "choices": [True, False]}}}
    sweep = Sweep(store, "attacked", space, base={"attack": {"when": "front", "quantize": {"bits": [8, 4]}}})
    attacked = {"on": (True, 0.10, 0.20), "off": (False, 0.12, 0.55)}
    for trial_id, (clreg, before, after) in attacked.items():
        sweep.trial(trial_id, {"clreg.enabled": clreg}, {
            "forget_quality": 0.5, "model_utility": 0.5, "relearn/forget_prob_before": before,
            "relearn/forget_prob": after, "relearn/R": 0.9 if clreg else 0.4, "quant4/forget_prob": before,
            "quant/Q": 1.0, "relearn/robustness": 0.95 if clreg else 0.57, "relearn/recovery": after - before})
    sweep.trial("not-attacked", {"clreg.enabled": True}, {"forget_quality": 0.4, "model_utility": 0.4})

    report = sweep_report(sweep.root)

    section = report.markdown.split("## Attacks", 1)[1].split("\n## ", 1)[0]
    assert "`attack.when: front`" in section
    assert "| trial | CLReg | forget_prob on B | after relearning | recovery | R | forget_prob at 4 bits | Q | " \
           "robustness |" in section
    rows = [line for line in section.splitlines() if line.startswith("| simnpo")]
    assert rows == ["| simnpo τ=0.5 λ=1 last-1 | on | 0.1 | 0.2 | 0.1 | 0.9 | 0.1 | 1 | 0.95 |",
                    "| simnpo no-CLReg | off | 0.12 | 0.55 | 0.43 | 0.4 | 0.12 | 1 | 0.57 |"]
    points = report.plots[RELEARN_PNG]
    assert sorted((p.clreg, p.before, p.after) for p in points) == [(False, 0.12, 0.55), (True, 0.10, 0.20)]
    check_png(report.directory / RELEARN_PNG)


def test_a_sweep_without_attacks_says_so_and_draws_no_relearning_plot(store: Path) -> None:
    sweep = Sweep(store, "unattacked", {"parameters": {"clreg.enabled": {"type": "categorical",
                                                                          "choices": [True, False]}}})
    sweep.trial("t", {"clreg.enabled": True}, {"forget_quality": 0.5, "model_utility": 0.5})
    report = sweep_report(sweep.root)
    assert "No attack figures: `attack.when` is never." in report.markdown
    assert RELEARN_PNG not in report.plots and "before vs after relearning" not in report.skipped
