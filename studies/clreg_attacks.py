"""Is forgetting durable? Relearning and quantization attacks on the base methods with and without CLReg
(issue 16), produced by the tool itself.

    flock /tmp/clreg-heavy.lock .venv/bin/python -m studies.clreg_attacks [--workdir DIR] [--skip-sweeps]

Steps, each through the `clreg-sweep` command line (the helpers of `studies.clreg_synthetic` run and read them):
1. `clreg-sweep sweep studies/sweeps/attacks.yaml`: prepare (target and oracle on synthetic TOFU), the attack
   reference (oracle and target relearned once), then 30 trials: GradDiff, NPO, SimNPO, UNDIAL, PDU x CLReg on/off
   x seeds 0-2, each attacked after its evaluation (`attack.when: final`) by relearning on half A of the forget set
   and by 8- and 4-bit quantization, with robustness as the sweep's third objective;
2. `studies/clreg-attacks.md` written from the finished trials in MLflow, the cached attack reference and the
   prepare report.

The claim tested (arXiv 2601.22028, 2601.10566): representation shaping removes knowledge that prediction-space
methods only suppress, so with CLReg less comes back under attack. Everything but the Markdown goes to the work
directory; a step already done there is skipped.
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
from orchestrator.sweep import STATE_FILE, load_sweep_dir
from studies.clreg_synthetic import (
    ALPHA,
    Steps,
    SweepResult,
    SweepSpec,
    Trial,
    _f,
    _finite,
    command_lines,
    group,
    machine_lines,
    mean_sd,
    overall,
    read_sweep,
    run_sweep,
    study_parser,
    table,
    values,
    welch,
)
from trainables.attacks.protocol import read_reference
from trainables.report_keys import QUANT_Q, RELEARN_R, RELEARN_RECOVERY, ROBUSTNESS, quant_metric, relearn_metric

REPO = Path(__file__).resolve().parents[1]
OUT_FILE = REPO / "studies" / "clreg-attacks.md"
SWEEP = SweepSpec("attacks", REPO / "studies" / "sweeps" / "attacks.yaml",
                  "GradDiff, NPO, SimNPO, UNDIAL, PDU with and without CLReg under relearning and quantization")
DEFAULT_WORKDIR = Path("/tmp/clreg-attack-study")
METHODS = ("graddiff", "npo", "simnpo", "undial", "pdu")  # the sweep's grid, in its order
METRIC = "forget_prob"  # the sweep's attack.metric: recovery, R and Q are computed from it
BEFORE, AFTER, QUANT4 = relearn_metric(METRIC, before=True), relearn_metric(METRIC), quant_metric(4, METRIC)
REMOVED, RELAPSE = "removed", "relapse"  # derived per trial here, see `derived`
MIN_REMOVED = 0.1  # below this share of the target's lead removed, a relapse share is noise over a small base
COLUMNS = ("forget_quality", "model_utility", METRIC, BEFORE, AFTER, REMOVED, RELEARN_RECOVERY, RELAPSE, RELEARN_R,
           QUANT4, QUANT_Q, ROBUSTNESS)
# Durability claims: with CLReg, less of the forget set comes back under attack.
CLAIMS = ((RELEARN_RECOVERY, "lower"), (RELAPSE, "lower"), (RELEARN_R, "higher"), (QUANT_Q, "higher"),
          (ROBUSTNESS, "higher"))
COSTS = ("train_seconds", "attack/relearn_seconds", "attack/quantize_seconds")


@dataclass
class Context:
    """Everything the Markdown is written from."""

    workdir: Path
    steps: dict[str, dict]
    env: dict
    result: SweepResult
    reference: dict[str, dict]  # {"oracle": figures, "target": figures} under the trials' relearning attack
    prepare: dict
    argv: list[str]


def derived(trial: Trial, reference: dict[str, dict]) -> dict[str, float]:
    """The trial's metrics plus two shares on the held-out half B, from its figures and the reference's.

    `removed`: how much of the target's lead over the oracle on B unlearning took away, (t - b) / (t - o);
    `relapse`: how much of what was taken away the relearning attack brought back, (a - b) / (t - b), only where
    at least `MIN_REMOVED` of the lead was removed (recovery divides by the lead, so a method that removed
    little also recovers little: relapse is the fairer comparison of durability).
    """
    m = dict(trial.metrics)
    t, o = reference["target"].get(BEFORE, math.nan), reference["oracle"].get(BEFORE, math.nan)
    b, a = m.get(BEFORE, math.nan), m.get(AFTER, math.nan)
    if _finite(t) and _finite(o) and _finite(b) and t - o > 0:
        m[REMOVED] = (t - b) / (t - o)
        if m[REMOVED] >= MIN_REMOVED and _finite(a):
            m[RELAPSE] = (a - b) / (t - b)
    return m


def variants(ctx: Context) -> dict[tuple[str, str], list[Trial]]:
    """Trials by (method, CLReg on/off) with the derived shares in their metrics, in the sweep's method order,
    CLReg off first."""
    trials = [Trial(t.trial_id, t.record, derived(t, ctx.reference), t.profile) for t in ctx.result.trials]
    groups = group(trials, "method.name", "clreg.enabled")
    return dict(sorted(groups.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1] == "true")))


def _name(key: tuple[str, str]) -> str:
    return f"{key[0]}{' + CLReg' if key[1] == 'true' else ''}"


def results_table(ctx: Context, groups: dict[tuple[str, str], list[Trial]]) -> list[str]:
    """Mean ± std over seeds of every column per variant, with the target and oracle under the same attack."""
    rows = [[_name(k), str(len(ts)), *(mean_sd(values(ts, c)) for c in COLUMNS)] for k, ts in groups.items()]
    for who in ("target", "oracle"):
        figures = {**ctx.prepare.get(who, {}), **ctx.reference[who]}
        rows.append([f"{who} (reference)", "1", *(_f(figures.get(c, math.nan)) for c in COLUMNS)])
    return table(["variant", "n", *COLUMNS], rows)


def durability(groups: dict[tuple[str, str], list[Trial]]) -> tuple[dict[str, str], list[str]]:
    """Per claim, the overall verdict over the methods; per method, CLReg on vs off on every claim."""
    per_claim: dict[str, list[str]] = {c: [] for c, _ in CLAIMS}
    lines = []
    for method in dict.fromkeys(k[0] for k in groups):
        on, off = groups.get((method, "true"), []), groups.get((method, "false"), [])
        parts = []
        for claim, direction in CLAIMS:
            a, b = values(on, claim), values(off, claim)
            if not a or not b:
                parts.append(f"{claim} not measured (n {len(a)} with, {len(b)} without)")
                continue
            test = welch(a, b)
            per_claim[claim].append(test.verdict(direction))
            parts.append(f"{claim} {mean_sd(a)} with vs {mean_sd(b)} without ({test.text()}): "
                         f"{direction} **{test.verdict(direction)}**")
        removed = welch(values(on, REMOVED), values(off, REMOVED))
        parts.append("for scale, the share of the target's lead on B removed by unlearning "
                     f"{mean_sd(values(on, REMOVED))} with vs {mean_sd(values(off, REMOVED))} without "
                     f"({removed.text()})")
        lines.append(f"- **{method}**: " + "; ".join(parts) + ".")
    return {c: overall(v) if v else "not measured" for c, v in per_claim.items()}, lines


def flags(groups: dict[tuple[str, str], list[Trial]], target_utility: float) -> list[str]:
    """Numbers that mean little: variants that removed less than `MIN_REMOVED` of the lead, or that kept less than
    half of the target's model utility (a broken model forgets everything, durably or not)."""
    out = []
    for key, ts in groups.items():
        removed, utility = values(ts, REMOVED), values(ts, "model_utility")
        if removed and statistics.fmean(removed) < MIN_REMOVED:
            out.append(f"- **{_name(key)}** removed {mean_sd(removed)} of the target's lead on B: it barely "
                       "unlearned, so its recovery, R and relapse say little about durability (nothing to bring "
                       "back).")
        if utility and _finite(target_utility) and statistics.fmean(utility) < 0.5 * target_utility:
            out.append(f"- **{_name(key)}** kept model_utility {mean_sd(utility)} of the target's "
                       f"{_f(target_utility)}: the model is broken at this lr, so whatever it shows under attack is "
                       "not durable forgetting of the forget set.")
    return out


def reading(ctx: Context, groups: dict[tuple[str, str], list[Trial]]) -> str:
    """What the attacks show across all variants, next to the oracle under the same attack (generated from the
    numbers, so it says what this run measured)."""
    oracle_b, oracle_a = ctx.reference["oracle"].get(BEFORE, math.nan), ctx.reference["oracle"].get(AFTER, math.nan)
    erased = {k: ts for k, ts in groups.items() if (r := values(ts, REMOVED)) and statistics.fmean(r) >= 0.5}
    parts = []
    if erased:
        after = [statistics.fmean(values(ts, AFTER)) for ts in erased.values() if values(ts, AFTER)]
        recovered = [statistics.fmean(values(ts, RELEARN_RECOVERY)) for ts in erased.values()
                     if values(ts, RELEARN_RECOVERY)]
        parts.append(
            f"The {len(erased)} variants that removed at least half of the target's lead on B ("
            f"{', '.join(_name(k) for k in erased)}) are back at {_f(min(after))}-{_f(max(after))} on B after "
            f"relearning on A (recovery {_f(min(recovered))}-{_f(max(recovered))}; the target itself goes from "
            f"{_f(ctx.reference['target'].get(BEFORE, math.nan))} to {_f(ctx.reference['target'].get(AFTER, math.nan))}"
            f"), while the oracle, which never learned B, goes from {_f(oracle_b)} to {_f(oracle_a)} under the same "
            "attack: by this attack their forgetting is suppression, not erasure, with or without CLReg.")
    q = [statistics.fmean(values(ts, QUANT_Q)) for ts in groups.values() if values(ts, QUANT_Q)]
    moved = [abs(statistics.fmean(values(ts, QUANT4)) - statistics.fmean(values(ts, METRIC)))
             for ts in groups.values() if values(ts, QUANT4) and values(ts, METRIC)]
    if q and moved:
        parts.append(f"Quantization changes little here (group means of Q {_f(min(q))}-{_f(max(q))}; 4-bit weights "
                     f"move a variant's mean {METRIC} by at most {_f(max(moved))}), so the 4-bit recovery reported "
                     "for large bf16 models (arXiv 2410.16454) is not reproduced on this small fp32 model.")
    return " ".join(parts)


def costs(groups: dict[tuple[str, str], list[Trial]]) -> str:
    trials = [t for ts in groups.values() for t in ts]
    parts = [f"{c} {mean_sd(values(trials, c))}" for c in COSTS]
    return f"Per trial, mean ± std over all {len(trials)} trials: " + ", ".join(parts) + " (s)."


ANSWERS = {
    "holds": "yes: CLReg raised robustness significantly for every method",
    "contradicted": "no, the opposite: CLReg lowered robustness significantly for every method",
    "mixed": "mixed: CLReg raised robustness significantly for some methods and lowered it for others",
    "partly holds, partly not shown": "for some methods: CLReg raised robustness significantly for some and not "
                                      "detectably for the others",
    "partly contradicted, partly not shown": "no: CLReg lowered robustness significantly for some methods and "
                                             "changed it not detectably for the others",
    "not shown": "not shown: no method's robustness differs significantly with and without CLReg",
}


def headline(verdicts: dict[str, str]) -> str:
    """The study's one-sentence answer, from the robustness verdict (relapse and the rest listed beside it)."""
    robust = verdicts[ROBUSTNESS]
    return (f"**Does representation shaping make forgetting more durable here? "
            f"{ANSWERS.get(robust, robust)}** (robustness: {robust}; relapse: {verdicts[RELAPSE]}; recovery: "
            f"{verdicts[RELEARN_RECOVERY]}).")


def render(ctx: Context) -> str:
    """The whole Markdown report."""
    env, res = ctx.env, ctx.result
    sweep = load_sweep_dir(res.root)
    attack, train = sweep.base.attack, sweep.base.train
    groups = variants(ctx)
    verdicts, lines_by_method = durability(groups)
    failed = sum(n for s, n in res.counts.items() if s != "FINISHED")
    lines = [
        "# Is forgetting durable? Relearning and quantization attacks, with and without CLReg (synthetic TOFU)",
        "",
        f"Generated by `{shlex.join(['python', '-m', 'studies.clreg_attacks', *ctx.argv])}` on {env['date']} "
        "(issue 16). Every number below was produced by `clreg-sweep` and read back from its MLflow store, the "
        "cached attack reference and the prepare report; nothing was edited by hand.",
        "",
        "## Verdict",
        "",
        headline(verdicts),
        "",
        f"**Rule** (as in `clreg-synthetic.md`): per method, Welch's two-sided t-test of CLReg on vs off over seeds "
        f"(n = 3 a side unless shown); a claim **holds** when p < {ALPHA} in its direction, is **contradicted** "
        "when p < 0.05 the other way, and is **not shown** otherwise; the overall verdict of a claim combines the "
        "five methods'. With n = 3 only large, consistent effects reach p < 0.05.",
        "",
        "Overall per claim: " + "; ".join(f"{c} {d}: **{verdicts[c]}**" for c, d in CLAIMS) + ".",
        "",
        *lines_by_method,
        "",
        *flags(groups, ctx.prepare.get("target", {}).get("model_utility", math.nan)),
        "",
        reading(ctx, groups),
        "",
        "## Results",
        "",
        f"Mean ± std over seeds 0, 1, 2 (n trials). `{METRIC}` is on the whole forget set right after unlearning; "
        f"`{BEFORE}` / `{AFTER}` on the held-out half B before and after relearning on half A; `{REMOVED}` = "
        f"(target - before) / (target - oracle) on B; `{RELEARN_RECOVERY}` = (after - before) / (target - oracle); "
        f"`{RELAPSE}` = (after - before) / (target - before), where at least {MIN_REMOVED} was removed; R, Q and "
        "robustness as in the README's \"Attacks\". The reference rows are the target and the oracle relearned "
        "the same way (their `forget_prob` from the prepare report).",
        "",
        *results_table(ctx, groups),
        "",
        costs(groups),
        "",
        "## Protocol",
        "",
        f"- Unlearning: {train.epochs} epochs at lr {train.lr:g}, every method and CLReg at their defaults (PDU's "
        "eps 0.3, its retain-loss bound, has no default); seeds 0-2 vary only the unlearning run.",
        f"- Relearning: {attack.relearn.steps} optimizer steps on half A of the forget set (split seed "
        f"{attack.relearn.split_seed}), micro-batch {attack.relearn.micro_batch_size}, lr "
        f"{attack.relearn.lr if attack.relearn.lr is not None else sweep.base.prepare.lr:g} (prepare.lr, the rate "
        "the target learned the facts at), the same for every trial, the target and the oracle.",
        f"- Quantization: round-to-nearest, group size {attack.quantize.group_size}, "
        f"{', '.join(str(b) for b in attack.quantize.bits)} bits; Q is taken at the lowest width.",
        "- Objectives of the sweep: forget_quality, model_utility, relearn/robustness (a grid, so they decide "
        "only the reported front).",
        "",
        "## What this study cannot show",
        "",
        "- Scale: an 8-layer, 64-wide Llama trained from scratch on a generated benchmark, not a pretrained 1-8B "
        "model; quantization of a 64-wide fp32 model says little about 4-bit inference of a large one.",
        "- Size: the forget set has 16 rows, so B has 8: each figure on B is a mean over 8 answers.",
        "- Attack strength: one relearning budget and lr; a stronger attack (more steps, related data) might "
        "separate the methods differently. The benign variant (`attack.relearn.data: retain`) was not run.",
        "- Hyperparameters: one lr for all methods, no per-method tuning; methods that removed little are flagged "
        "above.",
        "",
        "## Setup",
        "",
        *machine_lines(env),
        f"- Sweep `{SWEEP.file.relative_to(REPO)}`; work directory (all outputs, outside the repository): "
        f"`{ctx.workdir}`; MLflow: `sqlite:///{ctx.workdir / 'mlflow.db'}`.",
        "",
        *command_lines(ctx.steps),
        f"The sweep step includes prepare ({ctx.prepare.get('seconds', '-')} s) and the attack reference. "
        f"Trials finished / failed: {len(res.trials)} / {failed}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = study_parser("python -m studies.clreg_attacks", __doc__, DEFAULT_WORKDIR)
    args = p.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    steps = Steps(workdir)
    if not args.skip_sweeps:
        run_sweep(steps, workdir, SWEEP, [f"prepare.cache_dir={workdir / 'cache'}"])
    result = read_sweep(SWEEP, workdir)
    prepared = Path(json.loads((result.root / STATE_FILE).read_text())["target_dir"]).parents[1]
    references = sorted(prepared.glob("attack-references/*/attack_reference.json"))
    if len(references) != 1:
        raise SystemExit(f"expected one attack reference under {prepared / 'attack-references'}, found "
                         f"{len(references)}: use a fresh --workdir")
    ctx = Context(workdir=workdir, steps=steps.done, env=machine(), result=result,
                  reference=read_reference(references[0]),
                  prepare=json.loads((prepared / "prepare_report.json").read_text()),
                  argv=sys.argv[1:] if argv is None else argv)
    OUT_FILE.write_text(render(ctx))
    print(f"[study] written to {OUT_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
