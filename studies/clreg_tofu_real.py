"""SimNPO and RMU with and without CLReg on real TOFU forget01, CPU-sized (issues 13, 19), produced by the tool
itself.

    flock /tmp/clreg-heavy.lock .venv/bin/python -m studies.clreg_tofu_real [--workdir DIR] [--skip-sweeps]

Steps, each through the `clreg-sweep` command line (the helpers of `studies.clreg_synthetic` run and read them):
1. `clreg-sweep sweep studies/sweeps/tofu-real.yaml`: prepare (the tiny preset built from scratch, fine-tuned on
   forget01 + 60 retain99 rows + the real-authors / world-facts rows as target, without forget01 as oracle), then 24
   trials: SimNPO / RMU x +/- CLReg x lr 1e-3 / 3e-3 x seeds 0-2;
2. `clreg-sweep eval` of the prepared target with the oracle reference (the "before unlearning" row: the prepare
   report has no forget quality for the target, which is evaluated before the oracle exists);
3. `studies/clreg-tofu-real.md` written from the finished trials in MLflow and the prepare report.

The real TOFU files are read from `../shared/data/tofu` beside the repository (passed to the workers as an absolute
path). Everything but the Markdown goes to the work directory; a step already done there is skipped.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import machine
from orchestrator.sweep import STATE_FILE
from studies.clreg_synthetic import (
    ALPHA,
    Steps,
    SweepResult,
    SweepSpec,
    Trial,
    _f,
    _finite,
    command_lines,
    evaluate_target,
    group,
    machine_lines,
    mean_sd,
    one_sample,
    overall,
    read_sweep,
    run_sweep,
    study_parser,
    table,
    values,
    welch,
)
from trainables.evaluation import load_eval

REPO = Path(__file__).resolve().parents[1]
TOFU = (REPO / ".." / "shared" / "data" / "tofu").resolve()
OUT_FILE = REPO / "studies" / "clreg-tofu-real.md"
BASE_FILE = REPO / "studies" / "sweeps" / "tofu-real-base.yaml"
SWEEP = SweepSpec("tofu-real", REPO / "studies" / "sweeps" / "tofu-real.yaml",
                  "SimNPO and RMU with and without CLReg at lr 1e-3 and 3e-3 on real TOFU forget01")
METHOD_LABELS = {"simnpo": "SimNPO", "rmu": "RMU"}
DEFAULT_WORKDIR = Path("/tmp/clreg-tofu-real-study")
COLUMNS = ("forget_quality", "model_utility", "forget_prob", "forget_truth_ratio", "forget_rouge", "retain_prob",
           "retain_rouge", "ra_prob", "wf_prob")


def data_sets(workdir: Path) -> list[str]:
    """Overrides every step shares: the absolute data path and the prepared-model cache in the work directory."""
    return [f"data.path={TOFU}", f"prepare.cache_dir={workdir / 'cache'}"]


@dataclass
class Context:
    """Everything the Markdown is written from."""

    workdir: Path
    steps: dict[str, dict]
    env: dict
    result: SweepResult
    target: dict[str, float]
    prepare: dict
    argv: list[str]


def variants(trials: list[Trial]) -> dict[tuple[str, str, str], list[Trial]]:
    """Trials by (method, lr, clreg on/off): methods as the sweep lists them, lr ascending, CLReg off first."""
    groups = group(trials, "method.name", "train.lr", "clreg.enabled")
    order = list(METHOD_LABELS)
    return dict(sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else len(order),
                                                       float(kv[0][1]), kv[0][2] == "true")))


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _name(key: tuple[str, str, str]) -> str:
    method, lr, clreg = key
    return f"{_label(method)}{' + CLReg' if clreg == 'true' else ''}, lr {float(lr):g}"


def results_table(ctx: Context) -> list[str]:
    """Mean ± std over seeds of every column per variant, with the target and oracle rows."""
    rows = [[_name(k), str(len(ts)), *(mean_sd(values(ts, c)) for c in COLUMNS)]
            for k, ts in variants(ctx.result.trials).items()]
    rows.append(["target (before unlearning)", "1", *(_f(ctx.target.get(c, math.nan)) for c in COLUMNS)])
    oracle = ctx.prepare.get("oracle", {})
    rows.append(["oracle (retain only)", "1", *(_f(oracle.get(c, math.nan)) for c in COLUMNS)])
    return table(["variant", "n", *COLUMNS], rows)


def unlearning_verdicts(ctx: Context) -> tuple[str, list[str]]:
    """Does each variant move forget quality up and forget_prob down from the target (one-sample t-tests)?"""
    lines, fq_verdicts = [], []
    for key, ts in variants(ctx.result.trials).items():
        target_fq, target_prob = ctx.target.get("forget_quality", math.nan), ctx.target.get("forget_prob", math.nan)
        fq = one_sample(values(ts, "forget_quality"), target_fq)
        prob = one_sample(values(ts, "forget_prob"), target_prob)
        fq_verdicts.append(fq.verdict("higher"))
        lines.append(f"   - **{_name(key)}**: forget_quality {mean_sd(values(ts, 'forget_quality'))} vs the target's "
                     f"{_f(target_fq)} ({fq.text()}): **{fq.verdict('higher')}**; forget_prob "
                     f"{mean_sd(values(ts, 'forget_prob'))} vs {_f(target_prob)} ({prob.text()}): lowered "
                     f"**{prob.verdict('lower')}**.")
    return overall(fq_verdicts), lines


def clreg_verdicts(ctx: Context) -> tuple[str, str, list[str]]:
    """CLReg on vs off per method and lr: forget quality higher? utility kept (contradicted only by a significant
    drop)?"""
    lines, fq_all, mu_all = [], [], []
    order = list(METHOD_LABELS)
    by_lr = group(ctx.result.trials, "method.name", "train.lr")
    for (method, lr), ts in sorted(by_lr.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                                  else len(order), float(kv[0][1]))):
        on = [t for t in ts if t.param("clreg.enabled") == "true"]
        off = [t for t in ts if t.param("clreg.enabled") == "false"]
        fq = welch(values(on, "forget_quality"), values(off, "forget_quality"))
        mu = welch(values(on, "model_utility"), values(off, "model_utility"))
        prob = welch(values(on, "forget_prob"), values(off, "forget_prob"))
        kept = "contradicted (significant drop)" if mu.verdict("higher") == "contradicted" else \
            "holds (no significant drop)"
        fq_all.append(fq.verdict("higher"))
        mu_all.append(kept)
        lines.append(f"   - {_label(method)}, lr {float(lr):g}: forget_quality with CLReg "
                     f"{mean_sd(values(on, 'forget_quality'))} vs without {mean_sd(values(off, 'forget_quality'))} "
                     f"({fq.text()}): **{fq.verdict('higher')}**; "
                     f"model_utility {mean_sd(values(on, 'model_utility'))} vs {mean_sd(values(off, 'model_utility'))} "
                     f"({mu.text()}): kept **{kept}**; forget_prob {mean_sd(values(on, 'forget_prob'))} vs "
                     f"{mean_sd(values(off, 'forget_prob'))} ({prob.text()}): lowered by CLReg "
                     f"**{prob.verdict('lower')}**.")
    return overall(fq_all), overall(mu_all), lines


def truth_ratio_sentence(ctx: Context) -> str:
    """Why forget quality can stay put while forget_prob falls: where the forget truth ratios are."""
    oracle = ctx.prepare.get("oracle", {}).get("forget_truth_ratio", math.nan)
    target = ctx.target.get("forget_truth_ratio", math.nan)
    groups = variants(ctx.result.trials)
    means = {k: statistics.fmean(v) for k, ts in groups.items() if (v := values(ts, "forget_truth_ratio"))}
    listed = ", ".join(f"{_name(k)} {mean_sd(values(ts, 'forget_truth_ratio'))}" for k, ts in groups.items())
    near_target = bool(means) and all(abs(m - target) < abs(m - oracle) for m in means.values())
    reading = ("every variant's mean stays closer to the target's than to the oracle's: unlearning lowers the "
               "probability of the trained answers (forget_prob, forget_rouge), but the model still prefers the "
               "paraphrased answers over the wrong ones nearly as much as before, so forget quality stays near the "
               "target's" if near_target else "some variant's mean is closer to the oracle's than to the target's")
    return (f"Forget quality compares the forget items' truth ratios (wrong answers' probability over the "
            f"paraphrased answer's) with the oracle's. Their aggregate `forget_truth_ratio` (mean of min(tr, 1/tr), "
            f"1 = no preference) is {_f(target)} for the target and {_f(oracle)} for the oracle; after unlearning: "
            f"{listed}. So {reading}. The oracle's own forget quality (against itself) is 1 by definition and not "
            "listed.")


def prepare_lines(ctx: Context) -> list[str]:
    """What prepare built: how well target and oracle know the forget set, and its notes and warnings."""
    rep, target, oracle = ctx.prepare, ctx.prepare.get("target", {}), ctx.prepare.get("oracle", {})
    lines = [f"- target forget_prob {_f(target.get('forget_prob', math.nan))}, oracle "
             f"{_f(oracle.get('forget_prob', math.nan))}; model_utility target "
             f"{_f(target.get('model_utility', math.nan))}, oracle {_f(oracle.get('model_utility', math.nan))}; "
             f"built in {rep.get('seconds', '-')} s."]
    if "extra_train" in rep:
        lines.append(f"- {rep['extra_train']['note']}.")
    warnings = rep.get("warnings")
    lines.append("- prepare's warnings: " + ("; ".join(warnings) if warnings else "none") + ".")
    return lines


def render(ctx: Context) -> str:
    """The whole Markdown report."""
    env, res = ctx.env, ctx.result
    moved, unlearn_lines = unlearning_verdicts(ctx)
    fq_clreg, mu_clreg, clreg_lines = clreg_verdicts(ctx)
    failed = sum(n for s, n in res.counts.items() if s != "FINISHED")
    distinct = sorted({float(f"{v:.6g}") for v in values(res.trials, "forget_quality")})
    lines = [
        "# SimNPO and RMU ± CLReg on real TOFU forget01 (tiny preset, CPU)",
        "",
        f"Generated by `{shlex.join(['python', '-m', 'studies.clreg_tofu_real', *ctx.argv])}` on {env['date']} "
        "(issues 13 and 19). "
        "Every number below was produced by `clreg-sweep` and read back from its MLflow store and the trials' "
        "evaluation files; nothing was edited by hand.",
        "",
        "## Verdicts",
        "",
        f"**Rule** (as in `clreg-synthetic.md`): Welch's two-sided t-test over seeds (one-sample against the target's "
        f"single value where a variant is compared with the target); a claim **holds** when p < {ALPHA} in its "
        "direction, is **contradicted** when p < 0.05 the other way, and is **not shown** otherwise; \"utility is "
        "kept\" is contradicted only by a significant drop. n = 3 seeds a side: only large, consistent effects can "
        "reach p < 0.05.",
        "",
        f"1. Unlearning raises forget quality above the target's: **{moved}**.",
        *unlearn_lines,
        f"2. CLReg raises forget quality over the base method alone: **{fq_clreg}**; 3. CLReg keeps model utility: "
        f"**{mu_clreg}** (per method and lr, with how much further CLReg lowers forget_prob):",
        *clreg_lines,
        "",
        truth_ratio_sentence(ctx),
        "",
        f"forget_quality took {len(distinct)} distinct values over the {len(res.trials)} trials "
        f"({', '.join(_f(v) for v in distinct)}): it is a KS-test p-value over the 40 forget items against the "
        "oracle's truth ratios, so it moves in steps.",
        "",
        "## Results",
        "",
        "Mean ± std over seeds 0, 1, 2 (n trials). `ra_prob` / `wf_prob`: real-authors / world-facts normalised "
        "probability (facts the tiny model was taught by prepare, see below).",
        "",
        *results_table(ctx),
        "",
        "## Prepared models",
        "",
        *prepare_lines(ctx),
        "",
        "## What this study cannot show",
        "",
        "- Scale: a 4-layer, 64-wide Llama trained from scratch (vocabulary 1024, trained on the benchmark text), "
        "not a pretrained 1-8B model; its absolute numbers are not comparable with published TOFU tables.",
        "- Knowledge: the tiny model knows only what prepare taught it. Real authors and world facts are trained "
        "facts here, so utility on them measures recall, not general knowledge; a pretrained model's forget-set "
        "paraphrases and perturbations are scored against world knowledge this model lacks.",
        "- Size: forget01's 40 rows, 60 of retain99's 3960 rows (the first 60 retain_perturbed questions), no "
        "holdout (no MIA or PrivLeak in the shared copy).",
        "- What a seed varies: `train.seed` changes only the unlearning run (data order, dropout); every trial "
        "starts from the same prepared target.",
        "- Hyperparameters: SimNPO, RMU and CLReg at their defaults (SimNPO beta 4.5, gamma 0.125, alpha 1; RMU "
        "steering_coeff 2, embed_diff retain loss, alpha 1, every parameter trained, at decoder layer 1 of 4 instead "
        "of its default 7; CLReg tau 0.5, lambda 1, last-1); lr 1e-3 and 3e-3 (chosen for SimNPO to unlearn "
        "noticeably on this model, used for RMU as they are), 10 epochs; no tuning.",
        "",
        "## Setup",
        "",
        *machine_lines(env),
        f"- Data: `{TOFU}` (real TOFU, see its README.md); trial config `{BASE_FILE.relative_to(REPO)}`, sweep "
        f"`{SWEEP.file.relative_to(REPO)}`.",
        f"- Work directory (all outputs, outside the repository): `{ctx.workdir}`; MLflow: "
        f"`sqlite:///{ctx.workdir / 'mlflow.db'}`.",
        "",
        *command_lines(ctx.steps),
        f"Prepare is included when the work directory started empty (its "
        f"{ctx.prepare.get('seconds', '-')} s are part of the sweep step). Trials finished / failed: "
        f"{len(res.trials)} / {failed}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = study_parser("python -m studies.clreg_tofu_real", __doc__, DEFAULT_WORKDIR)
    args = p.parse_args(argv)
    if not (TOFU / "forget01.json").is_file():
        raise SystemExit(f"real TOFU files not found at {TOFU}")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    steps = Steps(workdir)
    if not args.skip_sweeps:
        run_sweep(steps, workdir, SWEEP, data_sets(workdir))
    result = read_sweep(SWEEP, workdir)
    target_dir = json.loads((result.root / STATE_FILE).read_text())["target_dir"]
    config_args = [str(BASE_FILE.relative_to(REPO)), *(a for s in data_sets(workdir) for a in ("--set", s))]
    target = load_eval(evaluate_target(steps, workdir, target_dir, config_args))
    ctx = Context(workdir=workdir, steps=steps.done, env=machine(), result=result,
                  target={k: v for k, v in target.aggregates.items() if _finite(v)},
                  prepare=json.loads((Path(target_dir).parents[1] / "prepare_report.json").read_text()),
                  argv=sys.argv[1:] if argv is None else argv)
    OUT_FILE.write_text(render(ctx))
    print(f"[study] written to {OUT_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
