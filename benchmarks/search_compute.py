"""Front per unit of training compute: epoch candidates and multi-objective early stopping (issue 17, item 6).

Why: a sweep pays for optimizer steps. A trial that evaluates during training already holds several models, and
`search.candidates: epochs` lets each of them reach the front; `search.early_stopping` stops a trial another beat
at the same evaluation and spends its steps on new trials. This measures what each buys: the hypervolume of the
front after a budget of training steps, with and without candidates, with and without stopping, over several
sampler seeds.

How: the objective of `benchmarks.search_efficiency` (a deep copy of the small prepared target trained with
SimNPO + CLReg through the trial's own objective and data schedule, then scored with the real forget quality and
model utility), evaluated every `--every` of its `--steps` optimizer steps, like a trial with `eval.every`. Per
sampler seed, multivariate TPE over the `clreg-default` space (the quickstart's sampler and space) runs:

- `final`: Optuna is told the last evaluation; the front is over the trials' last evaluations (no candidates);
- `candidates`: the same study (the same trials and steps), the front over every evaluation of every trial;
- `best_hv`: Optuna is told the evaluation `orchestrator.candidates.pick("best_hv")` picks, the front over every
  evaluation (`search.trial_value: best_hv`);
- `stopping`: Optuna is told the last evaluation; at every evaluation but the last, a trial that another trial beat
  at the same evaluation (`orchestrator.early_stopping.dominated_by`; `--margin` 0 and `--grace` one evaluation by
  default) is stopped and told PRUNED, and new trials start while a whole trial's steps are left in the budget;
  the front is over the finished trials' last evaluations (`stopping`) or all their evaluations
  (`stopping+candidates`), as in a sweep, where a stopped trial is never on the front.

A point's training is deterministic (seeded), so each sampled point is trained once, in full, and a stopped trial
is charged only the steps before its stop. The budget is `--trials x --steps` steps; the hypervolume is
`orchestrator.pareto.hypervolume` with the sweep's default reference (0, 0). A second table thins the `final`
study's evaluations (every 2nd, 5th, ... and the last): the front those same trials would have had with fewer
evaluations a trial, down to one (final only).

    flock /tmp/clreg-ray.lock .venv/bin/python -m benchmarks.search_compute [--trials 16] [--seeds 5] [--steps 75]
        [--every 25] [--variants final best_hv stopping] [--margin 0] [--grace 1] [--out FILE]

The README's runs: the defaults (`search_compute.json`); `--steps 80 --every 8 --seeds 7 --variants final best_hv`
(`search_compute_every8.json`); `--steps 100 --every 10 --seeds 7 --variants final` (`search_compute_steps100.json`);
`--steps 80 --every 8 --seeds 7 --variants final stopping --margin 0.05 --grace 2` (`search_compute_stopping.json`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.common import machine, write_result
from benchmarks.search_efficiency import (
    DEFAULT_STEPS,
    MAXIMIZE,
    OBJECTIVES,
    PRESET,
    Objective,
    add_common_args,
    build_objective,
    replotted,
)

VARIANTS = ("final", "candidates", "best_hv", "stopping", "stopping+candidates")
OBJECTIVE_MODES = [(name, "max" if up else "min") for name, up in zip(OBJECTIVES, MAXIMIZE)]


@dataclass
class Trained:
    """One sampled point trained in full: its objective values at each evaluation (steps trained -> values), or
    the failure that ended it (a non-finite loss: no point, as a FAILED sweep trial)."""

    evaluations: dict[int, list[float]]
    failure: str | None
    train_seconds: float
    eval_seconds: float


@dataclass
class Runner:
    """Trains sampled points with evaluations every `every` steps, each point once."""

    objective: Objective
    every: int
    cache: dict[str, Trained] = field(default_factory=dict)

    def __call__(self, params: dict) -> Trained:
        key = json.dumps(params, sort_keys=True)
        if key not in self.cache:
            self.cache[key] = self._train(params)
        return self.cache[key]

    def _train(self, params: dict) -> Trained:
        from search_spaces.space import apply
        from trainables.config import TrialConfig

        seed = self.objective.trial_seeds[0]
        cfg = TrialConfig.model_validate(apply(self.objective.base, {**params, "train.seed": seed}))
        evaluations: dict[int, list[float]] = {}
        spent = {"eval": 0.0}

        def after_step(done: int, model: torch.nn.Module) -> None:
            if done % self.every and done != self.objective.steps:
                return
            started = time.perf_counter()
            model.eval()
            metrics = self.objective.evaluate(model, cfg)
            model.train()
            spent["eval"] += time.perf_counter() - started
            values = [metrics.get(name) for name in OBJECTIVES]
            if all(v is not None and math.isfinite(v) for v in values):
                evaluations[done] = [float(v) for v in values]

        started = time.perf_counter()
        _, failure = self.objective.unlearn(cfg, after_step)
        total = time.perf_counter() - started
        return Trained({} if failure else evaluations, failure, total - spent["eval"], spent["eval"])


def run_variant(runner: Runner, variant: str, seed: int, budget_steps: int, margin: float = 0.0,
                grace: int = 1) -> list[dict]:
    """One seeded TPE study of `variant` until `budget_steps` training steps are spent; one record per trial with
    the steps it was charged and the evaluations the front may use. `margin` and `grace` (in evaluations) are the
    stopping variants' `search.early_stopping.margin` and `grace_epochs`."""
    import optuna

    from orchestrator.candidates import pick
    from orchestrator.early_stopping import dominated_by
    from orchestrator.search import make_sampler
    from orchestrator.sweep_config import SearchConfig
    from search_spaces.presets import load_preset

    space = load_preset(PRESET)
    trials = budget_steps // runner.objective.steps
    study = optuna.create_study(directions=["maximize" if m else "minimize" for m in MAXIMIZE],
                                sampler=make_sampler(SearchConfig(sampler="tpe", seed=seed), trials))
    rungs: dict[int, list[list[float]]] = {}  # steps -> the points trials reported there (stopping)
    records, spent, number = [], 0, 0
    # A new trial starts only while a whole one fits: stopping's leftover steps (less than a trial) go unspent.
    while budget_steps - spent >= runner.objective.steps:
        trial = study.ask()
        params = space.sample(trial, runner.objective.num_layers)
        trained = runner(params)
        steps, kept, state = runner.objective.steps, dict(trained.evaluations), "COMPLETE"
        if trained.failure or not trained.evaluations:
            state = "FAIL"
        elif variant.startswith("stopping"):
            for at in sorted(trained.evaluations):
                point = trained.evaluations[at]
                others = list(rungs.get(at, []))
                rungs.setdefault(at, []).append(point)
                if (at != runner.objective.steps and at >= grace * runner.every
                        and dominated_by(point, others, MAXIMIZE, margin)):
                    steps, state = at, "PRUNED"
                    kept = {s: v for s, v in kept.items() if s <= at}
                    break
        spent += steps
        told = None
        if state == "COMPLETE":
            if variant == "best_hv":
                done = [list(t.values) for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
                told = pick("best_hv", {s: dict(zip(OBJECTIVES, v)) for s, v in kept.items()}, OBJECTIVE_MODES,
                            told=done)
            else:
                told = max(kept)
            study.tell(trial, kept[told])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED if state == "PRUNED"
                       else optuna.trial.TrialState.FAIL)
        records.append({"variant": variant, "seed": seed, "trial": number, "params": params, "state": state,
                        "steps": steps, "spent": spent, "told_at": told,
                        "evaluations": {str(s): v for s, v in kept.items()},
                        "train_seconds": trained.train_seconds, "eval_seconds": trained.eval_seconds})
        print(f"{variant:20s} seed {seed} trial {number:2d}: {state:8s} {steps:3d} steps (spent {spent:4d}/"
              f"{budget_steps}) {_fmt(kept, told)}", flush=True)
        number += 1
    return records


def _fmt(evaluations: dict[int, list[float]], told: int | None) -> str:
    return " ".join(f"@{s}{'*' if s == told else ''}=({v[0]:.3f},{v[1]:.3f})" for s, v in sorted(evaluations.items()))


def front_points(records: Sequence[dict], candidates: bool) -> list[list[float]]:
    """The points a sweep's front is over: each COMPLETE trial's last evaluation, or all its evaluations."""
    out = []
    for r in records:
        if r["state"] != "COMPLETE":
            continue
        evaluations = {int(s): v for s, v in r["evaluations"].items()}
        out += list(evaluations.values()) if candidates else [evaluations[max(evaluations)]]
    return out


def hv_at(records: Sequence[dict], candidates: bool, budget_steps: int) -> float:
    """Hypervolume of the front of the trials that ended within `budget_steps` steps."""
    from orchestrator.pareto import default_reference, hypervolume

    points = front_points([r for r in records if r["spent"] <= budget_steps], candidates)
    return hypervolume(points, default_reference(points, MAXIMIZE), MAXIMIZE) if points else 0.0


def hv_per_seed(records: Sequence[dict], candidates: bool, budget_steps: int, seeds: Sequence[int]) -> list[float]:
    """`hv_at` of each sampler seed's records, in the order of `seeds`."""
    return [hv_at([r for r in records if r["seed"] == s], candidates, budget_steps) for s in seeds]


def variant_records(records: Sequence[dict], variant: str) -> list[dict]:
    """The records the front of `variant` is computed from (`candidates` reads the `final` study's)."""
    study = {"candidates": "final", "stopping+candidates": "stopping"}.get(variant, variant)
    return [r for r in records if r["variant"] == study]


def uses_candidates(variant: str) -> bool:
    return variant in ("candidates", "best_hv", "stopping+candidates")


def summarize(records: Sequence[dict], budgets: Sequence[int], seeds: Sequence[int]) -> dict[str, dict[int, dict]]:
    """variant -> budget (steps) -> median, min, max of the hypervolume over seeds, and the per-seed values."""
    out: dict[str, dict[int, dict]] = {}
    for variant in VARIANTS:
        chosen = variant_records(records, variant)
        if not chosen:
            continue
        out[variant] = {}
        for budget in budgets:
            out[variant][budget] = _spread(hv_per_seed(chosen, uses_candidates(variant), budget, seeds))
    return out


def _spread(hvs: list[float]) -> dict:
    return {"median": statistics.median(hvs), "min": min(hvs), "max": max(hvs), "per_seed": hvs}


def thinned(records: Sequence[dict], keep_every: int) -> list[dict]:
    """The records with only the evaluations a trial evaluating every `keep_every` steps would have made (and its
    last). Exact for the `final` study: what Optuna is told there, and so its trials, do not depend on them."""
    out = []
    for r in records:
        evaluations = {int(s): v for s, v in r["evaluations"].items()}
        kept = {s: v for s, v in evaluations.items() if s % keep_every == 0 or s == max(evaluations)}
        out.append({**r, "evaluations": {str(s): v for s, v in kept.items()}})
    return out


def by_evaluations(records: Sequence[dict], budgets: Sequence[int], seeds: Sequence[int], steps: int,
                   every: int) -> dict[int, dict[int, dict]]:
    """Evaluations a trial -> budget -> hypervolume over seeds of the `final` study's trials with epoch candidates,
    had the trials evaluated every k x `every` steps (k x `every` dividing `steps`; one evaluation: no candidates).
    Why: how much candidates add depends on how finely a trial is evaluated; the same trials show it for free."""
    final = variant_records(records, "final")
    grids = [k * every for k in range(1, steps // every + 1) if steps % (k * every) == 0]
    out: dict[int, dict[int, dict]] = {}
    for grid in grids:
        chosen = thinned(final, grid)
        out[steps // grid] = {b: _spread(hv_per_seed(chosen, True, b, seeds)) for b in budgets}
    return out


def format_table(summary: dict, steps: int, label: str = "variant") -> str:
    budgets = sorted(next(iter(summary.values())))
    lines = [f"| {label} | " + " | ".join(f"{b} steps ({b // steps} trials)" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for row, by_budget in summary.items():
        cells = [f"{v['median']:.4f} ({v['min']:.4f}-{v['max']:.4f})" for v in (by_budget[b] for b in budgets)]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: Sequence[dict], seeds: Sequence[int], budget: int, path: Path, title: str) -> None:
    """Median hypervolume over seeds against training steps spent, one line per variant, min-max band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = sorted({0, budget} | {r["spent"] for r in records if r["spent"] <= budget})  # where a front can change
    for index, variant in enumerate(VARIANTS):
        chosen = variant_records(records, variant)
        if not chosen:
            continue
        cols = [hv_per_seed(chosen, uses_candidates(variant), x, seeds) for x in xs]
        color = f"C{index}"
        ax.plot(xs, [statistics.median(c) for c in cols], color=color, lw=2, label=f"{variant}: median",
                drawstyle="steps-post")
        ax.fill_between(xs, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.08, step="post")
    ax.set_xlabel("training steps spent")
    ax.set_ylabel("hypervolume of the front (ref (0, 0))")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"written to {path}")


def report(records: list[dict], settings: dict, costs: dict, host: dict, out: Path) -> None:
    steps, trials, seeds = settings["steps"], settings["trials"], settings["sampler_seeds"]
    budgets = sorted({steps * n for n in (2, 4, trials // 2, trials) if 0 < n <= trials})
    summary = summarize(records, budgets, seeds)
    print(f"\nhypervolume after a budget of training steps, median (min-max) over {len(seeds)} sampler seeds:")
    print(format_table(summary, steps))
    density = by_evaluations(records, budgets, seeds, steps, settings["every"]) if "final" in summary else {}
    if density:
        print("\nthe final study's trials with epoch candidates, by evaluations a trial (1: final only):")
        print(format_table(density, steps, label="evaluations a trial"))
    print(f"costs: {json.dumps(costs)}")
    write_result(out, {"benchmark": "search_compute", "machine": host, "settings": settings, "costs": costs,
                       "summary": {v: {str(b): s for b, s in by.items()} for v, by in summary.items()},
                       "by_evaluations": {str(n): {str(b): s for b, s in by.items()} for n, by in density.items()},
                       "points": records})
    plot(records, seeds, steps * trials, out.with_suffix(".png"),
         f"TPE over {settings['preset']}, {steps} SimNPO+CLReg steps a trial, evaluated every {settings['every']}; "
         f"median and min-max over {len(seeds)} sampler seeds")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16,
                   help="budget in trials of --steps steps; the table also shows half of it (the quickstart: 8)")
    p.add_argument("--seeds", type=int, default=5, help="sampler seeds 0..seeds-1")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps per trial")
    p.add_argument("--every", type=int, default=25, help="evaluate every this many steps (and after the last)")
    p.add_argument("--margin", type=float, default=0.0, help="early stopping's margin (search.early_stopping.margin)")
    p.add_argument("--grace", type=int, default=1,
                   help="early stopping's grace in evaluations (search.early_stopping.grace_epochs)")
    p.add_argument("--variants", nargs="+", default=["final", "best_hv", "stopping"],
                   choices=["final", "best_hv", "stopping"],
                   help="studies to run (candidates and stopping+candidates read final's and stopping's)")
    add_common_args(p, "benchmarks/results/search_compute.json")
    args = p.parse_args(argv)
    if replotted(args, report):
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runner = Runner(build_objective(args.cache_dir, args.steps, [0], args.set), args.every)
    setup = time.perf_counter() - started
    budget = args.trials * args.steps
    records = [r for seed in range(args.seeds) for v in args.variants
               for r in run_variant(runner, v, seed, budget, args.margin, args.grace)]
    trained = list(runner.cache.values())
    settings = {"preset": PRESET, "sampler": "tpe", "steps": args.steps, "every": args.every, "trials": args.trials,
                "sampler_seeds": list(range(args.seeds)), "variants": args.variants, "threads": args.threads,
                "stopping": {"margin": args.margin, "grace_evaluations": args.grace},
                "overrides": args.set, "objectives": list(OBJECTIVES), "reference": [0.0, 0.0]}
    costs = {"points_trained": len(trained), "setup_seconds": setup, "wall_seconds": time.perf_counter() - started,
             "median_train_seconds": statistics.median(t.train_seconds for t in trained),
             "median_eval_seconds_per_point": statistics.median(t.eval_seconds for t in trained),
             "failed_points": sum(t.failure is not None for t in trained)}
    report(records, settings, costs, machine(), args.out)


if __name__ == "__main__":
    main()
