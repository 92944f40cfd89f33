"""The CLReg reproduction study on synthetic TOFU (issue 7), produced by the tool itself.

    flock /tmp/clreg-ray.lock .venv/bin/python -m studies.clreg_synthetic [--workdir DIR] [--skip-sweeps]

Steps, each through the `clreg-sweep` command line so the study exercises exactly what a user runs:
1. pilot: `clreg-sweep run` of SimNPO + CLReg at a few epoch budgets, to choose the sweeps' budget (the brief
   starts from 3 epochs and takes more if they do not unlearn the forget set at all);
2. the three sweeps of `studies/sweeps/` (`clreg-sweep sweep`), each in its own storage dir and MLflow experiment;
3. `clreg-sweep eval` of the prepared target with the oracle reference: the "before unlearning" row (the prepare
   report has no forget quality for the target, which is evaluated before the oracle exists);
4. every finished trial read back from MLflow (`orchestrator.report.finished_trials`) with its record
   (`trial.json`), the per-layer entanglement from each trial's `seed-<s>/eval_per_item.json`, and
   `studies/clreg-synthetic.md` written from them.

A step whose output already exists in the work directory is not run again (its recorded wall time is kept), so an
interrupted study continues where it stopped; `--skip-sweeps` only reads what is there. Everything the study
writes, except the Markdown, lives under the work directory (outside the repository).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scipy import stats

from benchmarks.common import machine
from orchestrator import tracking
from orchestrator.pareto import hypervolume, summarize
from orchestrator.report import finished_trials
from orchestrator.sweep import STATE_FILE, SWEEP_FILE, load_sweep_dir, sweep_paths
from orchestrator.trial_record import TrialRecord
from trainables.evaluation import load_eval
from trainables.metrics.evaluate import AGGREGATES_FILE
from trainables.model.layers import LayerError, LayerSpec
from trainables.report_keys import seed_dir

REPO = Path(__file__).resolve().parents[1]
OUT_FILE = REPO / "studies" / "clreg-synthetic.md"
CLI = [sys.executable, "-m", "orchestrator.cli"]
DEFAULT_WORKDIR = Path("/tmp/clreg-study")
PILOT_EPOCHS = (3, 10, 30)
ALPHA = 0.05  # the one significance level of every verdict (Welch's t-test, two-sided)
OBJECTIVES = (("forget_quality", "max"), ("model_utility", "max"))
# Columns of every comparison table: the objectives, how much of the forget set is still known, entanglement.
COLUMNS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "forget_prob",
           "entanglement_variance", "entanglement_mk_mmd", "entanglement_w2")
# Direction in which CLReg is claimed to move each entanglement measure (the metrics' docstrings).
ENTANGLEMENT = (("variance", "lower"), ("mk_mmd", "higher"), ("w2", "higher"))


@dataclass(frozen=True)
class SweepSpec:
    """One sweep of the study: its key (also its storage dir), file and what it compares."""

    key: str
    file: Path
    what: str


SWEEPS = (
    SweepSpec("methods", REPO / "studies/sweeps/methods.yaml", "SimNPO, NPO and RMU with and without CLReg"),
    SweepSpec("layers", REPO / "studies/sweeps/layers.yaml", "SimNPO + CLReg at last-1, last-4, last-7"),
    SweepSpec("tau", REPO / "studies/sweeps/tau.yaml", "SimNPO + CLReg at tau 0.1 .. 0.9"),
)


@dataclass
class Trial:
    """One finished trial: its record (the resolved config), final metrics and the per-layer entanglement profile
    (the entries of every seed it trained)."""

    trial_id: str
    record: TrialRecord
    metrics: dict[str, float]
    profile: list[dict] = field(default_factory=list)

    def param(self, name: str) -> str:
        """The trial's setting at a dotted config path, as lower-case text (`clreg.enabled` -> "true")."""
        return str(self.record.value(name)).lower()


@dataclass
class SweepResult:
    """What the report needs from one sweep."""

    spec: SweepSpec
    root: Path
    trials: list[Trial]
    counts: dict[str, int]  # MLflow child-run status -> number of runs


@dataclass(frozen=True)
class Test:
    """Welch's two-sided t-test of mean(a) - mean(b) with its 95 % confidence interval."""

    diff: float
    p: float
    low: float
    high: float
    no_spread: bool = False  # both groups constant: t is undefined (forget_quality often is, see `welch`)

    def verdict(self, claim: str) -> str:
        """'holds' when significant in the claimed direction ('higher'/'lower'), 'contradicted' when significant
        the other way, 'not shown' otherwise: the one rule of the study."""
        if not math.isfinite(self.p) or self.p >= ALPHA:
            return "not shown"
        return "holds" if (self.diff > 0) == (claim == "higher") else "contradicted"

    def text(self) -> str:
        if self.no_spread:
            return f"diff {_f(self.diff)}, identical in every seed on both sides, so no t-test (p undefined)"
        return f"diff {_f(self.diff)}, 95% CI [{_f(self.low)}, {_f(self.high)}], p {_p(self.p)}"


def overall(verdicts: list[str]) -> str:
    """One word for several verdicts of the same finding: all the same, or 'mixed' when some hold and some are
    contradicted."""
    kinds = {v.split(" ")[0] for v in verdicts}
    if len(kinds) == 1:
        return verdicts[0]
    if {"holds", "contradicted"} <= kinds:
        return "mixed"
    return "partly " + ("holds" if "holds" in kinds else "contradicted") + ", partly not shown"


# --------------------------------------------------------------------------------------------------- running


class Steps:
    """Runs the study's commands once each and keeps their command lines and wall times in `steps.json`."""

    def __init__(self, workdir: Path) -> None:
        self.file = workdir / "steps.json"
        self.logs = workdir / "logs"
        self.done: dict[str, dict] = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def run(self, name: str, argv: list[str]) -> dict:
        """Run `argv` from the repository root, output to `logs/<name>.log`; record command, start, wall time."""
        self.logs.mkdir(parents=True, exist_ok=True)
        command = shlex.join(["python" if a == sys.executable else a for a in argv])
        print(f"[study] {name}: {command}", flush=True)
        started = time.time()
        with open(self.logs / f"{name}.log", "w") as log:
            rc = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
        record = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                  "seconds": round(time.time() - started, 1), "rc": rc, "log": str(self.logs / f"{name}.log")}
        print(f"[study] {name}: exit {rc} after {record['seconds']} s", flush=True)
        self.done[name] = record
        self.file.write_text(json.dumps(self.done, indent=2))
        return record


def common_sets(workdir: Path) -> list[str]:
    """Overrides that keep the prepared models (shared by every step) in the work directory."""
    return ["--set", f"prepare.cache_dir={workdir / 'cache'}"]


def run_pilot(steps: Steps, workdir: Path) -> None:
    """SimNPO + CLReg at each pilot epoch budget, seed 0, with `clreg-sweep run`."""
    for epochs in PILOT_EPOCHS:
        if (workdir / "pilot" / f"simnpo-e{epochs}" / AGGREGATES_FILE).is_file():
            continue
        steps.run(f"pilot-e{epochs}", [*CLI, "run", *common_sets(workdir), "--set", f"output_dir={workdir / 'pilot'}",
                                       "--set", f"train.epochs={epochs}", "--name", f"simnpo-e{epochs}"])


def sweep_root(spec: SweepSpec, workdir: Path) -> Path:
    """The sweep directory: `<workdir>/<key>/<sweep name>` (storage.dir is per sweep)."""
    from orchestrator.sweep_config import load_sweep_config

    cfg = load_sweep_config(spec.file, [f"storage.dir={workdir / spec.key}"])
    return sweep_paths(cfg).root


def run_sweep(steps: Steps, workdir: Path, spec: SweepSpec, base_sets: list[str]) -> None:
    """`spec`'s sweep through `clreg-sweep sweep` with the trial-config overrides `base_sets` (`path=value`, set
    under `base.`), its storage dir and MLflow store in the work directory; skipped when its directory already
    holds a run the study recorded, refused when it holds one the study did not."""
    root = sweep_root(spec, workdir)
    if (root / SWEEP_FILE).exists():
        if spec.key in steps.done:
            return
        raise SystemExit(f"{root} exists but the study did not record running it: `clreg-sweep resume {root}` or "
                         "remove it")
    sets = [a for s in base_sets for a in ("--set", f"base.{s}")]
    steps.run(spec.key, [*CLI, "sweep", str(spec.file.relative_to(REPO)), *sets,
                         "--set", f"storage.dir={workdir / spec.key}",
                         "--set", f"mlflow.tracking_uri=sqlite:///{workdir / 'mlflow.db'}"])


def run_sweeps(steps: Steps, workdir: Path, keys: list[str]) -> None:
    """Each selected sweep of `SWEEPS`, sharing the work directory's prepared models."""
    for spec in SWEEPS:
        if spec.key in keys:
            run_sweep(steps, workdir, spec, [f"prepare.cache_dir={workdir / 'cache'}"])


def machine_lines(env: dict) -> list[str]:
    """The Setup bullets every study states: the machine it ran on and the library versions and commit."""
    return [
        f"- Machine: {env['cpus']} cores, {env['cpu']}, {env['memory_gib']} GiB, {env['os']}, GPU: "
        f"{env['gpu'] or 'none'}; shared with other work while the study ran, so wall times are indicative.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + f", Python {env['python']}; "
        f"commit {env['commit']} (the working tree may hold uncommitted changes).",
    ]


def study_parser(prog: str, doc: str, workdir: Path) -> argparse.ArgumentParser:
    """The options every study script takes: its work directory and `--skip-sweeps`."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=workdir, help="where every output goes (not the repo)")
    p.add_argument("--skip-sweeps", action="store_true", help="run nothing that trains; report what is there")
    return p


def command_lines(steps: dict[str, dict]) -> list[str]:
    """The Markdown of the commands a one-sweep study ran, with their start, wall time and exit code, and their
    total."""
    seconds = sum(s["seconds"] for s in steps.values())
    return [
        "Commands, run from the repository root (each logged under `logs/` of the work directory; `python` is the "
        "venv's, `python -m orchestrator.cli` is `clreg-sweep`), under `flock /tmp/clreg-heavy.lock`:",
        "",
        *table(["step", "command", "started", "wall time", "exit"],
               [[name, f"`{s['command']}`", s["started"], f"{s['seconds']:.0f} s", str(s["rc"])]
                for name, s in steps.items()]),
        "",
        f"Total: {seconds:.0f} s ({seconds / 60:.1f} min).",
    ]


def evaluate_target(steps: Steps, workdir: Path, target_dir: str, config_args: list[str] | None = None) -> Path:
    """`clreg-sweep eval` of the prepared target with the oracle reference (cheap, no Ray): the before row.

    `config_args` are the eval command's config file and `--set`s (default: this study's `common_sets`).
    """
    out = workdir / "target-eval"
    if not (out / AGGREGATES_FILE).is_file():
        reference = Path(target_dir).parents[1] / "oracle_reference.json"
        args = common_sets(workdir) if config_args is None else config_args
        steps.run("target-eval", [*CLI, "eval", target_dir, *args,
                                  "--oracle-reference", str(reference), "--out", str(out)])
    return out


# --------------------------------------------------------------------------------------------------- reading


def read_sweep(spec: SweepSpec, workdir: Path) -> SweepResult:
    """Finished trials from MLflow (the tool's source of truth) with their records, plus each one's per-layer
    entanglement profile."""
    root = sweep_root(spec, workdir)
    load_sweep_dir(root)  # refuses a directory that is not a sweep
    state = json.loads((root / STATE_FILE).read_text())
    trials = []
    for row in finished_trials(state["tracking_uri"], state["parent_run_id"], root / "trials"):
        profile = [entry for seed in row.record.seeds
                   for entry in load_eval(seed_dir(root / "trials" / row.trial_id, seed)).per_item.get(
                       "entanglement_profile") or []]
        trials.append(Trial(row.trial_id, row.record, row.metrics, profile))
    runs = tracking.sweep_children(state["tracking_uri"], state["experiment_id"], state["parent_run_id"],
                                   tries=tracking.READ_RETRIES)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.info.status] = counts.get(r.info.status, 0) + 1
    return SweepResult(spec, root, trials, counts)


def values(trials: list[Trial], metric: str) -> list[float]:
    """The finite values of `metric` over `trials` (MLflow drops non-finite ones, e.g. an infinite variance)."""
    return [t.metrics[metric] for t in trials if _finite(t.metrics.get(metric))]


def layer_values(trials: list[Trial], layer: int, key: str) -> list[float]:
    """The finite values of entanglement measure `key` at decoder layer `layer` over the trials' profiles."""
    return [p[key] for t in trials for p in t.profile if p["layer"] == layer and _finite(p.get(key))]


def group(trials: list[Trial], *names: str) -> dict[tuple[str, ...], list[Trial]]:
    """Trials grouped by the values of the named params, in first-seen order."""
    out: dict[tuple[str, ...], list[Trial]] = {}
    for t in trials:
        out.setdefault(tuple(t.param(n) for n in names), []).append(t)
    return out


# --------------------------------------------------------------------------------------------------- statistics


def welch(a: list[float], b: list[float]) -> Test:
    """Welch's t-test (no equal-variance assumption, the safer choice with 3 seeds a side)."""
    if len(a) < 2 or len(b) < 2:
        return Test(statistics.fmean(a) - statistics.fmean(b) if a and b else math.nan, math.nan, math.nan, math.nan)
    if statistics.pstdev(a) < 1e-12 and statistics.pstdev(b) < 1e-12:
        # forget_quality is a KS p-value over a few items and takes few distinct values: seeds often tie exactly.
        # The rule needs a p-value, so such a difference is "not shown", however consistent (and said so).
        diff = statistics.fmean(a) - statistics.fmean(b)
        return Test(diff, math.nan, diff, diff, no_spread=True)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    return Test(statistics.fmean(a) - statistics.fmean(b), float(res.pvalue), float(ci.low), float(ci.high))


def one_sample(a: list[float], value: float) -> Test:
    """One-sample t-test of mean(a) against a single reference number (the target model before unlearning)."""
    if len(a) < 2:
        return Test(math.nan, math.nan, math.nan, math.nan)
    res = stats.ttest_1samp(a, value)
    ci = res.confidence_interval(0.95)
    return Test(statistics.fmean(a) - value, float(res.pvalue), float(ci.low) - value, float(ci.high) - value)


def mean_sd(v: list[float]) -> str:
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else math.nan
    return f"{_f(statistics.fmean(v))} ± {'0' if abs(sd) < 1e-12 else _f(sd)}"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _f(v: float) -> str:
    return f"{v:.3g}" if _finite(v) else "-"


def _p(p: float) -> str:
    return "-" if not _finite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


# --------------------------------------------------------------------------------------------------- report


@dataclass
class Context:
    """Everything the Markdown is written from."""

    workdir: Path
    steps: dict[str, dict]
    env: dict
    results: dict[str, SweepResult]
    target: dict[str, float]  # `clreg-sweep eval` of the prepared target (with forget quality)
    target_profile: list[dict]
    prepare: dict  # the prepare report (oracle row, prepare time)
    pilot: dict[int, dict]
    argv: list[str]


def comparison_table(groups: dict[str, list[Trial]], ctx: Context, note: str = "") -> list[str]:
    """Mean ± std over seeds of every column, n per group, with the target and oracle rows for scale."""
    rows = [[name, str(len(ts)), *(mean_sd(values(ts, c)) + _n_note(ts, c) for c in COLUMNS)]
            for name, ts in groups.items()]
    rows.append(["target (before unlearning)", "1", *(_f(ctx.target.get(c, math.nan)) for c in COLUMNS)])
    oracle = ctx.prepare.get("oracle", {})
    rows.append(["oracle (retain only)", "1", *(_f(oracle.get(c, math.nan)) for c in COLUMNS)])
    lines = table(["group", "n", *COLUMNS], rows)
    return lines + ([f"\n{note}"] if note else [])


def _n_note(trials: list[Trial], metric: str) -> str:
    """Says when fewer trials than the group's size have a finite value (e.g. an infinite variance)."""
    n = len(values(trials, metric))
    return "" if n == len(trials) else f" (n={n})"


METHOD_ORDER = ("simnpo", "npo", "rmu")  # the order the methods sweep lists them in; any other after them


def study_methods(res: SweepResult) -> list[str]:
    """The base methods the sweep ran, in `METHOD_ORDER`."""
    names = {t.param("method.name") for t in res.trials}
    return sorted(names, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


def finding1(ctx: Context) -> tuple[list[str], list[str]]:
    """CLReg lowers forget-retain entanglement: on vs off per method, at the target layer and at every layer."""
    res = ctx.results["methods"]
    summary, body = [], []
    num_layers = max((p["layer"] for t in res.trials for p in t.profile), default=-1) + 1
    at_target: dict[str, list[str]] = {key: [] for key, _ in ENTANGLEMENT}
    for method in study_methods(res):
        on = [t for t in res.trials if t.param("method.name") == method and t.param("clreg.enabled") == "true"]
        off = [t for t in res.trials if t.param("method.name") == method and t.param("clreg.enabled") == "false"]
        parts = []
        for key, claim in ENTANGLEMENT:
            metric = f"entanglement_{key}"
            test = welch(values(on, metric), values(off, metric))
            parts.append(f"{key} {mean_sd(values(off, metric))} without → {mean_sd(values(on, metric))} with CLReg "
                         f"({test.text()}): **{test.verdict(claim)}**")
            at_target[key].append(test.verdict(claim))
        per_layer = {key: [welch(layer_values(on, layer, key), layer_values(off, layer, key)).verdict(claim)
                           for layer in range(num_layers)] for key, claim in ENTANGLEMENT}
        counts = "; ".join(f"{key}: holds at {v.count('holds')}, contradicted at {v.count('contradicted')}, "
                           f"not shown at {v.count('not shown')} of {num_layers} layers"
                           for key, v in per_layer.items())
        summary.append(f"- **{method}** at the target layer (last-1): " + "; ".join(parts) + f". Across layers "
                       f"({counts}).")
        rows = []
        for layer in range(num_layers):
            cells = [str(layer)]
            for key, claim in ENTANGLEMENT:
                a, b = layer_values(on, layer, key), layer_values(off, layer, key)
                test = welch(a, b)
                cells += [mean_sd(b), mean_sd(a), _p(test.p), test.verdict(claim)]
            target = next((p for p in ctx.target_profile if p["layer"] == layer), {})
            cells.append(" / ".join(_f(target.get(k, math.nan)) for k, _ in ENTANGLEMENT))
            rows.append(cells)
        header = ["layer"]
        for key, claim in ENTANGLEMENT:
            header += [f"{key} off", f"{key} on", "p", f"{claim}?"]
        header.append("target v / mmd / w2")
        body += [f"#### {method}: entanglement per decoder layer, CLReg off vs on (mean ± std, n = "
                 f"{len(off)} / {len(on)} trials)", "", *table(header, rows), ""]
    verdict = overall([v for vs in at_target.values() for v in vs])
    head = (f"**Overall at the target layer, {', '.join(study_methods(res))}: {verdict}** ("
            + "; ".join(f"{key}: {overall(vs)}" for key, vs in at_target.items()) + ").")
    less = [k for k, vs in at_target.items() if overall(vs) == "holds"]
    more = [k for k, vs in at_target.items() if overall(vs) == "contradicted"]
    if less and more:
        head += (f" The measures disagree: by {', '.join(less)} CLReg leaves forget and retain less entangled, "
                 f"by {', '.join(more)} more entangled (W2 also counts a change in the *shape* of the two sets' "
                 "spread, not only the gap between their means).")
    return [head, "", *summary], body


def finding2(ctx: Context) -> tuple[list[str], list[str]]:
    """Last-1 is the best target layer: per objective (Welch vs each other layer) and on the Pareto objectives."""
    res = ctx.results["layers"]
    groups = {k[0]: ts for k, ts in sorted(group(res.trials, "clreg.layer").items(), key=lambda kv: _depth(kv[0][0]))}
    summary, per_metric = [], []
    for metric, mode in OBJECTIVES:
        claim = "higher" if mode == "max" else "lower"
        best = best_groups(groups, metric, mode)
        tests = {g: welch(values(groups.get("last-1", []), metric), values(ts, metric))
                 for g, ts in groups.items() if g != "last-1"}
        verdicts = [t.verdict(claim) for t in tests.values()]
        verdict = ("holds" if verdicts and all(v == "holds" for v in verdicts)
                   else "contradicted" if "contradicted" in verdicts else "not shown")
        detail = "; ".join(f"last-1 vs {g}: {t.text()}" for g, t in tests.items())
        means = ", ".join(f"{g} {mean_sd(values(ts, metric))}" for g, ts in groups.items())
        summary.append(f"- {metric} ({mode}): {means}; best mean: {best}. {detail}: **{verdict}**.")
        per_metric.append(verdict)
    names = [m for m, _ in OBJECTIVES]
    maximize = [mode == "max" for _, mode in OBJECTIVES]
    joint = summarize([t.metrics for t in res.trials], OBJECTIVES)
    scored = [res.trials[i] for i in joint.scored]
    reference = joint.reference
    front = {scored[i].trial_id for i in joint.front}
    rows = []
    for g, ts in groups.items():
        own = [[t.metrics[m] for m in names] for t in ts if t in scored]
        rows.append([g, str(len(ts)), f"{hypervolume(own, reference, maximize=maximize):.4g}",
                     str(sum(t.trial_id in front for t in ts))])
    best_hv = max(rows, key=lambda r: float(r[2]))[0] if rows else "-"
    summary.append(f"- Pareto objectives ({', '.join(names)}): hypervolume of each layer's own trials "
                   f"(reference {reference}): " + ", ".join(f"{r[0]} {r[2]}" for r in rows)
                   + f"; largest: {best_hv}. Trials on the front of all {len(scored)}: "
                   + ", ".join(f"{r[0]} {r[3]}" for r in rows) + " (descriptive, no test).")
    body = comparison_table({f"simnpo + CLReg @ {g}": ts for g, ts in groups.items()}, ctx,
                            "Entanglement columns are measured at each trial's own target layer.")
    body += ["", *table(["layer", "n", "hypervolume of its trials", "trials on the joint Pareto front"], rows)]
    head = (f"**Overall on the two objectives: {overall(per_metric)}** ("
            + "; ".join(f"{m}: {v}" for (m, _), v in zip(OBJECTIVES, per_metric)) + ").")
    return [head, "", *summary], body


def best_groups(groups: dict[str, list[Trial]], metric: str, mode: str) -> str:
    """The group with the best mean, and those it does not clearly beat: equal means are ties (forget_quality
    often is), means within the best group's std are named as such."""
    sign = 1 if mode == "max" else -1
    means = {g: statistics.fmean(v) for g, ts in groups.items() if (v := values(ts, metric))}
    if not means:
        return "-"
    top = max(means, key=lambda g: sign * means[g])
    tied = [g for g in means if g != top and abs(means[g] - means[top]) <= 1e-12]
    spread = statistics.stdev(values(groups[top], metric)) if len(values(groups[top], metric)) > 1 else 0.0
    close = [g for g in means if g != top and g not in tied and abs(means[g] - means[top]) <= spread]
    text = ", ".join([top, *tied]) + (" (tied)" if tied else "")
    return text + (f" ({', '.join(close)} within one std of it)" if close else "")


def _depth(layer: str) -> tuple[int, int]:
    """Sort key, top layer first (`LayerSpec.order` reversed): last-1 leads, as finding 2 compares with it."""
    try:
        kind, number = LayerSpec.from_param(layer).order
    except LayerError:
        return (1, 0)
    return (-kind, -number)


def finding3(ctx: Context) -> tuple[list[str], list[str]]:
    """Utility is kept: model_utility with vs without CLReg, and with CLReg vs the target before unlearning."""
    res = ctx.results["methods"]
    target = ctx.target.get("model_utility", math.nan)
    summary, verdicts = [], []
    for method in study_methods(res):
        on = values([t for t in res.trials if t.param("method.name") == method
                     and t.param("clreg.enabled") == "true"], "model_utility")
        off = values([t for t in res.trials if t.param("method.name") == method
                      and t.param("clreg.enabled") == "false"], "model_utility")
        vs_off, vs_target = welch(on, off), one_sample(on, target)
        summary.append(f"- **{method}**: model_utility {mean_sd(on)} with CLReg vs {mean_sd(off)} without "
                       f"({vs_off.text()}): **{_kept(vs_off)}**; vs the target before unlearning ({_f(target)}): "
                       f"{vs_target.text()}: **{_kept(vs_target)}**.")
        verdicts += [_kept(vs_off), _kept(vs_target)]
    return [f"**Overall: {overall(verdicts)}** (CLReg vs no CLReg and vs the target, every method).", "",
            *summary], []


def _kept(test: Test) -> str:
    """The same rule, read for a claim of no harm: 'contradicted' only by a significant drop."""
    return "contradicted (significant drop)" if test.verdict("higher") == "contradicted" else \
        "holds (no significant drop)"


def tau_section(ctx: Context) -> tuple[list[str], list[str]]:
    """The tau ablation table and a Spearman trend over all its trials."""
    res = ctx.results["tau"]
    groups = {k[0]: ts for k, ts in sorted(group(res.trials, "clreg.tau").items(), key=lambda kv: float(kv[0][0]))}
    body = comparison_table({f"tau {g}": ts for g, ts in groups.items()}, ctx)
    trends = []
    for metric in ("forget_quality", "model_utility", "forget_prob", "entanglement_variance"):
        pairs = [(float(t.param("clreg.tau")), t.metrics[metric]) for t in res.trials
                 if _finite(t.metrics.get(metric))]
        if len(pairs) < 3:
            continue
        rho, p = stats.spearmanr([x for x, _ in pairs], [y for _, y in pairs])
        shown = "trend shown" if _finite(p) and p < ALPHA else "no trend shown"
        ends = [g for g in (next(iter(groups)), list(groups)[-1])]
        trends.append(f"{metric} rho {_f(float(rho))} (p {_p(float(p))}, {shown}; tau {ends[0]}: "
                      f"{mean_sd(values(groups[ends[0]], metric))} → tau {ends[1]}: "
                      f"{mean_sd(values(groups[ends[1]], metric))})")
    best = {m: best_groups(groups, m, mode) for m, mode in OBJECTIVES}
    summary = [f"- Spearman correlation with tau over all {len(res.trials)} trials: " + "; ".join(trends)
               + f". Best mean forget_quality: tau {best['forget_quality']}; best mean model_utility: tau "
               + f"{best['model_utility']} (the paper found tau = 0.9 best for SimNPO + CLReg on Llama-3-8B)."]
    return summary, body


def render(ctx: Context) -> str:
    """The whole Markdown report."""
    env = ctx.env
    f1_summary, f1_body = finding1(ctx)
    f2_summary, f2_body = finding2(ctx)
    f3_summary, _ = finding3(ctx)
    tau_summary, tau_body = tau_section(ctx)
    methods = ctx.results["methods"]
    epochs = load_sweep_dir(methods.root).base.train.epochs
    lines = [
        "# CLReg reproduction study on synthetic TOFU (tiny preset)",
        "",
        f"Generated by `python -m studies.clreg_synthetic {shlex.join(ctx.argv)}` on {env['date']} (issue 7). "
        "Seed paper: Tang & Khanna, \"From Logits to Latents\", arXiv 2601.22028. Every number below was produced "
        "by `clreg-sweep` and read back from its MLflow store (`orchestrator.report.finished_trials`) and the trials' "
        "`eval_per_item.json`; nothing was edited by hand.",
        "",
        "## Verdicts",
        "",
        "In short:",
        "",
        f"1. CLReg lowers forget-retain entanglement: {f1_summary[0]}",
        f"2. Last-1 is the best layer: {f2_summary[0]}",
        f"3. Utility is kept: {f3_summary[0]}",
        "",
        f"**Rule** (applied the same way everywhere): for each comparison, Welch's two-sided t-test of the two groups' "
        f"means over seeds (n = 3 trials a side unless shown); a finding **holds** when p < {ALPHA} in the paper's "
        "direction, is **contradicted** when p < 0.05 in the other direction, and is **not shown** otherwise. "
        "\"Utility is kept\" is a claim of no harm, so there the same test is read as: contradicted only by a "
        "significant drop; its 95% confidence interval says how large a drop is still compatible with the data. "
        "With n = 3 the test has little power: only large, consistent effects reach p < 0.05, so *not shown* means "
        "\"not detectable at this size\", not \"false\".",
        "",
        "### Finding 1: CLReg lowers forget-retain entanglement",
        "",
        "Entanglement of forget vs retain representations (variance-based: lower = less entangled; MK-MMD² and W2: "
        "higher = more separated), CLReg on vs off, default CLReg settings (tau 0.5, lambda 1, last-1):",
        "",
        *f1_summary,
        "",
        "### Finding 2: Last-1 is the best target layer",
        "",
        "SimNPO + CLReg at last-1 / last-4 / last-7 (claim: last-1 better than each other layer):",
        "",
        *f2_summary,
        "",
        "### Finding 3: utility is kept",
        "",
        *f3_summary,
        "",
        "### Tau ablation",
        "",
        *tau_summary,
        "",
        "### What this study cannot show",
        "",
        f"- Scale: an 8-layer, 64-wide Llama trained from scratch on a generated benchmark ({epochs} unlearning "
        "epochs, a few dozen steps), not Llama-3-8B on real TOFU; the absolute numbers are not comparable with "
        "the paper's, and effects that need a pretrained model's representation geometry may not appear at all.",
        "- Real TOFU / MUSE: the synthetic authors are templated facts; forget and retain share templates, which "
        "makes their representations entangled in a way real biographies may not be.",
        "- What a seed varies: `train.seed` changes only the unlearning run (data order, dropout); every trial "
        "starts from the same prepared target on the same generated benchmark. The spread over seeds is therefore "
        "small and the p-values of consistent shifts tiny; a new target or benchmark seed would vary more, and "
        "these p-values say nothing about that.",
        "- Power: 3 seeds per group. Differences smaller than about two standard deviations cannot reach p < 0.05; "
        "forget_quality is itself a KS p-value over 16 forget items, so it moves in coarse steps.",
        "- Hyperparameters: every method and CLReg at their defaults (lr 1e-4; RMU at decoder layer 3, as in the "
        "`method-compare` preset); no per-method tuning, unlike the paper.",
        "",
        "## Setup",
        "",
        *machine_lines(env),
        f"- Work directory (all outputs, outside the repository): `{ctx.workdir}`; MLflow: "
        f"`sqlite:///{ctx.workdir / 'mlflow.db'}`, one experiment per sweep.",
        f"- Prepared target and oracle ({load_sweep_dir(methods.root).base.prepare.epochs} fine-tuning epochs each): "
        f"{ctx.prepare.get('seconds', '-')} s, built once into the work directory's cache and reused by every step.",
        "",
        "Commands, run from the repository root in this order (each logged under `logs/` of the work directory; "
        "`python` is the venv's `.venv/bin/python`, and `python -m orchestrator.cli` is `clreg-sweep`). The "
        "script runs each step once and skips the ones already done, so the steps may come from several "
        "invocations of it (see the start times); each invocation ran under "
        "`flock /tmp/clreg-ray.lock`, so no other Ray job of the project overlapped it (other work on the "
        "shared machine did):",
        "",
        *table(["step", "command", "started", "wall time", "exit", "trials finished / failed"],
               [[name, f"`{s['command']}`", s["started"], f"{s['seconds']:.0f} s", str(s["rc"]),
                 _counts(ctx.results.get(name))] for name, s in ctx.steps.items()]),
        "",
        f"Total: the three sweeps {_total(ctx, [s.key for s in SWEEPS])}, everything above "
        f"{_total(ctx, list(ctx.steps))}. The prepared models were already in the work directory's cache (built "
        "by an earlier pilot run, time above), so every step found them; from an empty work directory add that.",
        "",
        "## Epoch budget: the pilot",
        "",
        "SimNPO + CLReg at its defaults (seed 0), `clreg-sweep run` at each budget, against the target before "
        "unlearning:",
        "",
        *table(["epochs", *COLUMNS[:5]],
               [[str(e), *(_f(a.get(c, math.nan)) for c in COLUMNS[:5])] for e, a in sorted(ctx.pilot.items())]
               + [["target", *(_f(ctx.target.get(c, math.nan)) for c in COLUMNS[:5])]]),
        "",
        f"The sweeps use **{epochs} epochs**. " + pilot_sentence(ctx, epochs),
        "",
        f"## (a) {', '.join(study_methods(methods))} with and without CLReg",
        "",
        "Mean ± std over seeds 0, 1, 2 (n trials). Entanglement at the target layer last-1 (the runs without CLReg "
        "are measured at the same layer).",
        "",
        coarseness(ctx) + " " + reproducibility(ctx),
        "",
        *comparison_table({f"{k[0]} + CLReg {'on' if k[1] == 'true' else 'off'}": ts
                           for k, ts in group(methods.trials, "method.name", "clreg.enabled").items()}, ctx),
        "",
        *f1_body,
        "## (b) Target-layer ablation",
        "",
        *f2_body,
        "",
        "## (c) Temperature ablation (SimNPO + CLReg at last-1)",
        "",
        *tau_body,
        "",
        "Per-sweep tables with the Pareto front: `clreg-sweep report SWEEP_DIR` for " + ", ".join(
            f"`{r.root}`" for r in ctx.results.values()) + ".",
    ]
    return "\n".join(lines) + "\n"


def coarseness(ctx: Context) -> str:
    """forget_quality is a KS p-value over a handful of items: say how few values it took."""
    trials = [t for r in ctx.results.values() for t in r.trials]
    distinct = sorted({round(v, 6) for v in values(trials, "forget_quality")})
    return (f"forget_quality took {len(distinct)} distinct values over all {len(trials)} trials of the study "
            f"({', '.join(_f(v) for v in distinct)}), so it separates groups only in coarse steps.")


def reproducibility(ctx: Context) -> str:
    """The same configuration appears in all three sweeps (SimNPO + CLReg, tau 0.5, last-1): does it repeat?"""
    def same_config(res: SweepResult, param: str, value: str) -> dict[str, dict[str, float]]:
        return {t.param("train.seed"): t.metrics for t in res.trials
                if t.param(param) == value and t.param("method.name") == "simnpo"}

    a = same_config(ctx.results["methods"], "clreg.enabled", "true")
    others = [same_config(ctx.results["layers"], "clreg.layer", "last-1"),
              same_config(ctx.results["tau"], "clreg.tau", "0.5")]
    keys = ("forget_quality", "model_utility", "forget_prob", "entanglement_variance")
    gaps = [abs(o[seed][k] - a[seed][k]) for o in others for seed in o if seed in a for k in keys
            if _finite(o[seed].get(k)) and _finite(a[seed].get(k))]
    if not gaps:
        return ""
    same = "are identical to" if max(gaps) == 0 else f"differ by at most {max(gaps):.2g} from"
    return (f"Reproducibility: SimNPO + CLReg at tau 0.5 / last-1 runs in all three sweeps; per seed, its "
            f"{', '.join(keys)} in (b) and (c) {same} those in (a) ({len(gaps)} values compared).")


def pilot_sentence(ctx: Context, epochs: int) -> str:
    """How much of the forget set each pilot budget removed, in forget_prob (the most direct measure)."""
    base = ctx.target.get("forget_prob", math.nan)
    parts = [f"{e} epochs {_f(a.get('forget_prob', math.nan))} ({_f(a.get('forget_prob', math.nan) - base)})"
             for e, a in sorted(ctx.pilot.items())]
    return (f"forget_prob (mean probability of the forget answers) is {_f(base)} for the target; after "
            "unlearning (change): " + ", ".join(parts) + ". 3 epochs barely touch the forget set, "
            f"the condition under which the study takes a larger budget; {epochs} epochs keeps the three sweeps "
            "within 30 minutes on this machine, 30 epochs would triple the training time for a little more "
            "forgetting. Even so the forget set is only partly unlearned at the default lr 1e-4: the findings "
            "below are about a mild unlearning regime.")


def _total(ctx: Context, names: list[str]) -> str:
    seconds = sum(ctx.steps[n]["seconds"] for n in names if n in ctx.steps)
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def _counts(res: SweepResult | None) -> str:
    if res is None:
        return ""
    failed = sum(n for s, n in res.counts.items() if s != "FINISHED")
    return f"{len(res.trials)} / {failed}" + (f" ({res.counts})" if failed else "")


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = study_parser("python -m studies.clreg_synthetic", __doc__, DEFAULT_WORKDIR)
    p.add_argument("--sweeps", default=",".join(s.key for s in SWEEPS),
                   help="comma-separated subset of the sweeps to run now (the report needs all three)")
    p.add_argument("--no-report", action="store_true", help="run the steps only (e.g. to time one sweep)")
    args = p.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    steps = Steps(workdir)
    if not args.skip_sweeps:
        run_pilot(steps, workdir)
        run_sweeps(steps, workdir, args.sweeps.split(","))
    if args.no_report:
        return 0
    results = {s.key: read_sweep(s, workdir) for s in SWEEPS}
    target_dir = json.loads((results["methods"].root / STATE_FILE).read_text())["target_dir"]
    target = load_eval(evaluate_target(steps, workdir, target_dir))
    pilot = {e: json.loads((workdir / "pilot" / f"simnpo-e{e}" / AGGREGATES_FILE).read_text())
             for e in PILOT_EPOCHS if (workdir / "pilot" / f"simnpo-e{e}" / AGGREGATES_FILE).is_file()}
    ctx = Context(workdir=workdir, steps=steps.done, env=machine(), results=results,
                  target={k: v for k, v in target.aggregates.items() if _finite(v)},
                  target_profile=target.per_item.get("entanglement_profile") or [],
                  prepare=json.loads((Path(target_dir).parents[1] / "prepare_report.json").read_text()),
                  pilot=pilot, argv=sys.argv[1:] if argv is None else argv)
    OUT_FILE.write_text(render(ctx))
    print(f"[study] written to {OUT_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
