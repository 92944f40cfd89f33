"""Search efficiency: hypervolume of the Pareto front after n trials, per Optuna sampler (benchmarks issue, item 4).

Why: a sweep is only as cheap as the number of trials its sampler needs. This measures how fast each sampler the
sweep offers (`orchestrator.search.make_sampler`: multivariate TPE, NSGA-II, GP, random) finds good trade-offs
between the sweep's two objectives, forget quality and model utility (both maximised), over the real
`clreg-default` space (CLReg tau, lambda, layer and the learning rate on SimNPO). Target: the best sampler's median
hypervolume after 16 trials is at least random search's median after 32.

How: the objective is real but cheap and runs in this process, without Ray:

- once: `orchestrator.prepare.prepare` (a real local Ray cluster, fine-tuning the target and oracle models) on the
  small test benchmark and model (`SMALL_OVERRIDES`, the same as `tests/conftest.py`, with 16 world facts instead
  of 4, see `EXTRA_OVERRIDES`), cached under `~/.cache/clreg-sweep-bench`; the target's weights stay in memory;
- per trial: a deep copy of the target takes `--steps` (75) optimizer steps of SimNPO + CLReg with the sampled
  parameters through the trial's own objective and forward collector (`trainables.objectives.build_objective`,
  `trainables.engine.forward.ForwardCollector`, on the plain model), with the worker's data schedule, AdamW, gradient
  clipping 1.0 and the DeepSpeed lr schedule the engine gets from `deepspeed_config`; then
  `trainables.metrics.evaluate` computes forget quality (against the oracle reference from `prepare`) and model
  utility (generation-based ROUGE included, 16 new tokens); about 3-4 s per point on 2 CPU cores, nearly all of it
  training;
- per (sampler, seed): an in-memory multi-objective Optuna study, ask/tell, `SearchSpace.sample` as in the sweep.

The hypervolume after n trials is `orchestrator.pareto.hypervolume` of the COMPLETE trials among the first n
trials, with the sweep's reference (`orchestrator.pareto.default_reference`: (0, 0) here). A failed trial (a
non-finite loss) spends budget and adds no point; the number of failed trials is reported. A point sampled twice
(same parameters exactly) is evaluated once per run and marked `cached` in the results.

    flock /tmp/clreg-ray.lock .venv/bin/python -m benchmarks.search_efficiency \
        [--trials 32] [--seeds 3] [--samplers tpe nsga2 gp random] [--steps 75] [--trial-seeds 0]

4 samplers x 3 seeds x 32 trials took 17 minutes on the 2-core development machine (plus about a minute for
`prepare` the first time): 288 evaluations of about 3.3 s, as TPE's and GP's first 10 trials and NSGA-II's first 8
are exactly random search's points of the same seed and are evaluated once.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, write_result
from tests.conftest import SMALL_OVERRIDES  # the small test benchmark and model

SAMPLERS = ("tpe", "nsga2", "gp", "random")
CHECKPOINTS = (4, 8, 16, 32)
OBJECTIVES = ("forget_quality", "model_utility")
MAXIMIZE = (True, True)
PRESET = "clreg-default"
CACHE_DIR = Path("~/.cache/clreg-sweep-bench").expanduser()
# With the tests' 4 world facts, wf_rouge (a model-utility component) drops to exactly 0 as soon as the forget set is
# forgotten at all, and the harmonic mean makes model utility 0 with it: the front collapses to one point at the
# target's forget quality. 16 world facts (the config default) keep a real trade-off.
EXTRA_OVERRIDES = ["data.synthetic.num_world_facts=16"]
# A real trial of this config takes 9 steps (3 epochs x 3), the first two at lr 0 (DeepSpeed's warm-up), which
# leaves forget quality where the target has it for every point of the space; 75 let the high-lr corner forget.
DEFAULT_STEPS = 75


# ---------------------------------------------------------------------------------------------------------------
# hypervolume curves (pure)


def hv_curve(values: Sequence[Sequence[float] | None]) -> list[float]:
    """Hypervolume after n = 1..len(values) trials; `values[i]` is trial i's objectives, None unless COMPLETE."""
    from orchestrator.pareto import default_reference, hypervolume

    curve, done = [], []
    for v in values:
        if v is not None:
            done.append(list(v))
        curve.append(hypervolume(done, default_reference(done, MAXIMIZE), MAXIMIZE) if done else 0.0)
    return curve


def summarize(curves: dict[str, dict[int, list[float]]], checkpoints: Sequence[int]) -> dict[str, dict[int, dict]]:
    """sampler -> n -> median, min and max over seeds of the hypervolume after n trials (n within the curves)."""
    out: dict[str, dict[int, dict]] = {}
    for sampler, by_seed in curves.items():
        out[sampler] = {}
        for n in checkpoints:
            hvs = [c[n - 1] for c in by_seed.values() if len(c) >= n]
            if hvs:
                out[sampler][n] = {"median": statistics.median(hvs), "min": min(hvs), "max": max(hvs)}
    return out


def target_check(summary: dict[str, dict[int, dict]], fast: int, full: int) -> dict:
    """Whether the best non-random sampler's median HV after `fast` trials reaches random's median after `full`."""
    if "random" not in summary or full not in summary["random"]:
        return {"met": None, "reason": f"random search at n={full} was not run"}
    others = {s: by_n[fast]["median"] for s, by_n in summary.items() if s != "random" and fast in by_n}
    if not others:
        return {"met": None, "reason": f"no non-random sampler at n={fast}"}
    best = max(others, key=others.get)
    random_full = summary["random"][full]["median"]
    return {"met": others[best] >= random_full, "best_sampler": best, "best_median_hv_at_fast": others[best],
            "random_median_hv_at_full": random_full, "fast": fast, "full": full,
            "ratio": others[best] / random_full if random_full > 0 else None}


# ---------------------------------------------------------------------------------------------------------------
# the objective: K real unlearning steps on the prepared tiny target, then the real metrics


@dataclass
class Evaluation:
    """One evaluated point: objective values (None when the trial failed) and where its time went."""

    values: list[float] | None
    train_seconds: float
    eval_seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class Objective:
    """The prepared target in memory, its data and the oracle reference; `__call__` evaluates one sampled point."""

    base: dict  # the trial config (nested dict) the sampled parameters are applied to
    target: torch.nn.Module
    tokenizer: Any
    bench: Any
    data: Any  # trainables.engine.recipes.unlearn.UnlearnData
    oracle: Any  # trainables.metrics.OracleReference
    steps: int
    trial_seeds: list[int]
    cache: dict[str, Evaluation] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        from trainables.model.loading import num_layers

        return num_layers(self.target)

    def __call__(self, params: dict[str, Any]) -> tuple[Evaluation, bool]:
        """The point's evaluation (mean over `trial_seeds`, as a sweep trial reports) and whether it was cached."""
        key = json.dumps([params, self.steps, self.trial_seeds], sort_keys=True)
        if key in self.cache:
            return self.cache[key], True
        runs = [self._run(params, seed) for seed in self.trial_seeds]
        failed = next((r for r in runs if r.values is None), None)
        values = None if failed else [statistics.fmean(r.values[i] for r in runs) for i in range(len(OBJECTIVES))]
        result = Evaluation(values, sum(r.train_seconds for r in runs), sum(r.eval_seconds for r in runs),
                            {"per_seed": [r.metrics for r in runs]}, failed.failure if failed else None)
        self.cache[key] = result
        return result, False

    def _run(self, params: dict[str, Any], seed: int) -> Evaluation:
        from search_spaces.space import apply
        from trainables.config import TrialConfig

        cfg = TrialConfig.model_validate(apply(self.base, {**params, "train.seed": seed}))
        started = time.perf_counter()
        model, failure = self.unlearn(cfg)
        trained = time.perf_counter()
        if failure:
            return Evaluation(None, trained - started, 0.0, failure=failure)
        metrics = self.evaluate(model, cfg)
        values = [metrics.get(name) for name in OBJECTIVES]
        if any(v is None or not math.isfinite(v) for v in values):
            failure = f"missing objective: {metrics}"
        return Evaluation(None if failure else values, trained - started, time.perf_counter() - trained, metrics,
                          failure)

    def unlearn(self, cfg, after_step: Callable[[int, torch.nn.Module], None] | None = None
                 ) -> tuple[torch.nn.Module, str | None]:
        """`self.steps` optimizer steps of the trial worker's loop on a copy of the target (1 worker, no Ray);
        `after_step(steps_done, model)` runs after each step (a mid-run evaluation, `benchmarks.search_compute`)."""
        from trainables.engine.forward import Batches, ForwardCollector
        from trainables.engine.schedule import Layout, epoch_permutation, view_generator
        from trainables.objectives import build_objective as trial_objective

        torch.manual_seed(cfg.train.seed)
        model = copy.deepcopy(self.target).train()
        objective = trial_objective(cfg, self.num_layers)
        ref = copy.deepcopy(self.target).eval().requires_grad_(False) if objective.method.needs_ref else None
        collector = ForwardCollector(model, model, objective.needs, ref)
        layout = Layout(cfg.train.micro_batch_size, cfg.train.grad_accum, 1)
        opt, sched = _optimizer(model, cfg, self.steps)
        pad, data = self.tokenizer.pad_token_id, self.data
        steps_per_epoch = layout.steps_per_epoch(len(data.forget))
        for k in range(self.steps):
            epoch, step = divmod(k, steps_per_epoch)
            perm_f = epoch_permutation(len(data.forget), cfg.train.seed, epoch)
            perm_r = epoch_permutation(len(data.retain), cfg.train.seed + 1, epoch)
            retain_losses = []
            for a in range(layout.grad_accum):
                u = layout.micro_index(step, 0, a)
                batches = Batches(
                    forget=_batch(data.forget, perm_f, u, layout.micro_batch, pad),
                    retain=_batch(data.retain, perm_r, u, layout.micro_batch, pad),
                    paraphrase=(_batch(data.paraphrase, perm_f, u, layout.micro_batch, pad)
                                if objective.needs.forget_view == "paraphrase" else None),
                )
                terms = objective(collector(batches, view_generator(cfg.train.seed, epoch, u)))
                if not torch.isfinite(terms.total):
                    return model, f"non-finite loss at step {k} (lr={cfg.train.lr})"
                (terms.total / layout.grad_accum).backward()  # DeepSpeed scales by 1/accumulation too
                if terms.retain is not None:
                    retain_losses.append(terms.retain.item())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if objective.updates_dual:
                objective.dual_step(statistics.fmean(retain_losses))
            if after_step is not None:
                after_step(k + 1, model)
        return model.eval(), None

    def evaluate(self, model: torch.nn.Module, cfg) -> dict[str, Any]:
        from trainables.metrics import evaluate
        from trainables.model.layers import resolve_layer

        layer = resolve_layer(cfg.clreg.layer, self.num_layers)
        result = evaluate(model, self.tokenizer, self.bench, cfg.eval, target_layer=layer,
                          max_length=cfg.data.max_length, oracle=self.oracle, metrics=list(OBJECTIVES))
        return result.aggregates


def _batch(data: list, perm: list[int], micro_index: int, size: int, pad: int) -> dict[str, torch.Tensor]:
    from trainables.data.formatting import collate
    from trainables.engine.schedule import micro_batch

    return collate([data[i] for i in micro_batch(perm, micro_index, size)], pad)


def _optimizer(model: torch.nn.Module, cfg, total_steps: int):
    """Torch AdamW and the lr schedule with the settings `deepspeed_config` gives the trial's engine."""
    from trainables.engine.deepspeed_config import deepspeed_config, linear_schedule

    o = deepspeed_config(cfg.train, cfg.model.dtype, 1)["optimizer"]["params"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o["lr"], betas=tuple(o["betas"]),
                            eps=o["eps"], weight_decay=o["weight_decay"])
    return opt, linear_schedule(cfg.train.warmup_steps, total_steps)(opt)


def base_config(cache_dir: Path, overrides: Sequence[str] = ()):
    """The trial config of every point: the small test benchmark and model (then `overrides`), prepared models
    cached in `cache_dir`."""
    from orchestrator.config_files import load_config
    from trainables.config import TrialConfig

    return load_config(TrialConfig, None, [*SMALL_OVERRIDES, *overrides, f"prepare.cache_dir={cache_dir}"])


def build_objective(cache_dir: Path, steps: int | None, trial_seeds: list[int],
                    overrides: Sequence[str] = ()) -> Objective:
    """Prepare (or reuse) the target and oracle on a local Ray cluster, then load everything a point needs."""
    from orchestrator.cluster import ray_cluster
    from orchestrator.preflight import preflight
    from orchestrator.prepare import prepare
    from trainables.engine.recipes.unlearn import tokenised_data
    from trainables.engine.schedule import Layout
    from trainables.metrics import OracleReference
    from trainables.model.loading import load_causal_lm, load_tokenizer

    cfg = base_config(cache_dir, overrides)
    bench = preflight(cfg)
    with ray_cluster(num_cpus=2):
        prepared = prepare(cfg, log=print, bench=bench)
    tokenizer = load_tokenizer(prepared.target_dir, cfg.model.trust_remote_code)
    data = tokenised_data(cfg, tokenizer, bench)
    if steps is None:  # what a real trial of this config runs
        steps = cfg.train.epochs * Layout(cfg.train.micro_batch_size, cfg.train.grad_accum, 1).steps_per_epoch(
            len(data.forget))
    return Objective(
        base=cfg.model_dump(mode="json", by_alias=True),
        target=load_causal_lm(prepared.target_dir, cfg.model, trainable=True),
        tokenizer=tokenizer, bench=bench, data=data,
        oracle=OracleReference.from_json(Path(prepared.oracle_reference).read_text()),
        steps=steps, trial_seeds=trial_seeds,
    )


# ---------------------------------------------------------------------------------------------------------------
# the search


def run_study(objective: Objective, sampler: str, seed: int, trials: int) -> list[dict]:
    """`trials` ask/tell trials of one seeded sampler over the preset space; one record per trial."""
    import optuna

    from orchestrator.search import make_sampler
    from orchestrator.sweep_config import SearchConfig
    from search_spaces.presets import load_preset

    space = load_preset(PRESET)
    study = optuna.create_study(directions=["maximize" if m else "minimize" for m in MAXIMIZE],
                                sampler=make_sampler(SearchConfig(sampler=sampler, seed=seed), trials))
    records = []
    for number in range(trials):
        asked = time.perf_counter()
        trial = study.ask()
        params = space.sample(trial, objective.num_layers)
        sample_seconds = time.perf_counter() - asked
        result, cached = objective(params)
        if result.values is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, result.values)
        records.append({"sampler": sampler, "seed": seed, "trial": number, "params": params,
                        "state": "FAIL" if result.values is None else "COMPLETE", "values": result.values,
                        "failure": result.failure, "cached": cached, "sample_seconds": sample_seconds,
                        "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds})
        print(f"{sampler:6s} seed {seed} trial {number:2d}: {_fmt_values(result.values)}  "
              f"sample {sample_seconds:5.2f} s  eval {result.train_seconds + result.eval_seconds:5.2f} s"
              f"{'  (cached)' if cached else ''}", flush=True)
    return records


def _fmt_values(values: list[float] | None) -> str:
    return "FAIL" if values is None else " ".join(f"{n}={v:.4f}" for n, v in zip(OBJECTIVES, values))


def curves_of(records: list[dict]) -> dict[str, dict[int, list[float]]]:
    """sampler -> seed -> hypervolume after n = 1..trials, from the per-trial records."""
    runs: dict[str, dict[int, list]] = {}
    for r in sorted(records, key=lambda r: (SAMPLERS.index(r["sampler"]), r["seed"], r["trial"])):
        runs.setdefault(r["sampler"], {}).setdefault(r["seed"], []).append(r["values"])
    return {s: {seed: hv_curve(vals) for seed, vals in by_seed.items()} for s, by_seed in runs.items()}


# ---------------------------------------------------------------------------------------------------------------
# output


def format_table(summary: dict[str, dict[int, dict]], checkpoints: Sequence[int]) -> str:
    """Markdown table: one row per sampler, one column per n, `median (min-max)` hypervolume over seeds."""
    lines = ["| sampler | " + " | ".join(f"n={n}" for n in checkpoints) + " |",
             "|---|" + "---|" * len(checkpoints)]
    for sampler, by_n in summary.items():
        cells = [f"{by_n[n]['median']:.4f} ({by_n[n]['min']:.4f}-{by_n[n]['max']:.4f})" if n in by_n else "-"
                 for n in checkpoints]
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[int, list[float]]], target: dict, path: Path, title: str) -> None:
    """Hypervolume vs trials (log-log): per sampler the median over seeds (thick), the min-max band and each seed
    (thin), random's median after the full budget (dashed) and the half budget (dotted)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for index, (sampler, by_seed) in enumerate(curves.items()):
        n = min(len(c) for c in by_seed.values())
        x = list(range(1, n + 1))
        cols = [[c[i] for c in by_seed.values()] for i in range(n)]
        color = f"C{index}"
        ax.plot(x, [statistics.median(c) for c in cols], color=color, lw=2,
                label=f"{sampler}: median of {len(by_seed)} seeds")
        ax.fill_between(x, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.08)
        for c in by_seed.values():
            ax.plot(x, c[:n], color=color, lw=0.7, alpha=0.5, ls=(0, (index + 1, 2)))
    if target.get("random_median_hv_at_full") is not None:
        ax.axhline(target["random_median_hv_at_full"], color="grey", ls="--", lw=0.8,
                   label=f"random: median after {target['full']} trials")
        ax.axvline(target["fast"], color="grey", ls=":", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume of the front (ref (0, 0))")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"written to {path}")


def shared_with_random(records: list[dict]) -> dict[str, dict[int, int]]:
    """sampler -> seed -> how many leading trials asked exactly random search's points of the same seed (Optuna's
    samplers start from `RandomSampler(seed)` trials: TPE's and GP's start-up trials
    (`orchestrator.search.startup_trials`), NSGA-II's first generation), so the curves cannot differ before."""
    params = {(r["sampler"], r["seed"], r["trial"]): json.dumps(r["params"], sort_keys=True) for r in records}
    out: dict[str, dict[int, int]] = {}
    for sampler, seed in sorted({(r["sampler"], r["seed"]) for r in records}):
        if sampler == "random" or ("random", seed, 0) not in params:
            continue
        n = 0
        while (sampler, seed, n) in params and params[(sampler, seed, n)] == params.get(("random", seed, n)):
            n += 1
        out.setdefault(sampler, {})[seed] = n
    return out


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def cost_summary(records: list[dict]) -> dict[str, Any]:
    """Median seconds per evaluated (not cached) point, split into training and evaluation; sampler time."""
    fresh = [r for r in records if not r["cached"]]
    samplers = sorted({r["sampler"] for r in records})
    return {
        "evaluations": len(fresh), "cached_trials": len(records) - len(fresh),
        "failed_trials": sum(r["state"] == "FAIL" for r in records),
        "median_train_seconds": _median([r["train_seconds"] for r in fresh]),
        "median_eval_seconds": _median([r["eval_seconds"] for r in fresh]),
        "median_point_seconds": _median([r["train_seconds"] + r["eval_seconds"] for r in fresh]),
        "sample_seconds": {s: {"median": _median([r["sample_seconds"] for r in records if r["sampler"] == s]),
                               "total": sum(r["sample_seconds"] for r in records if r["sampler"] == s)}
                           for s in samplers},
    }


def report(records: list[dict], settings: dict, costs: dict, host: dict, out: Path) -> None:
    """Print the table and the target, write the JSON (with every point) and the plot next to it."""
    trials = settings["trials"]
    checkpoints = sorted({n for n in CHECKPOINTS if n <= trials} | {trials})
    curves = curves_of(records)
    summary = summarize(curves, checkpoints)
    target = target_check(summary, fast=max(1, trials // 2), full=trials)
    all_points = [r["values"] for r in records if r["values"] is not None]
    hv_all = hv_curve(all_points)[-1] if all_points else 0.0
    shared = shared_with_random(records)
    print(f"\nhypervolume after n trials, median (min-max) over {len(settings['sampler_seeds'])} sampler seeds:")
    print(format_table(summary, checkpoints))
    print(f"hypervolume of all {len(all_points)} evaluated points together: {hv_all:.4f}")
    print(f"leading trials identical to random search's (per seed): {shared}")
    print(f"target (best sampler at n={target.get('fast')} >= random at n={target.get('full')}): {target}")
    print(f"costs: {json.dumps(costs, default=str)}")
    write_result(out, {
        "benchmark": "search_efficiency", "machine": host, "settings": settings, "costs": costs,
        "summary": {s: {str(n): v for n, v in by_n.items()} for s, by_n in summary.items()}, "target": target,
        "hypervolume_all_points": hv_all, "leading_trials_shared_with_random": shared,
        "curves": {s: {str(seed): c for seed, c in by_seed.items()} for s, by_seed in curves.items()},
        "points": records,
    })
    plot(curves, target, out.with_suffix(".png"),
         f"{settings['preset']} on the tiny preset ({settings['forget_items']} forget items), {settings['steps']} "
         f"SimNPO+CLReg steps per point\nmedian (thick), min-max band and each of "
         f"{len(settings['sampler_seeds'])} sampler seeds (thin)")


def add_common_args(p: argparse.ArgumentParser, out: str) -> None:
    """The options of every benchmark over this objective: overrides, the prepared models' cache, torch threads,
    where the results go, and redoing the output from saved results."""
    p.add_argument("--set", nargs="*", default=EXTRA_OVERRIDES, metavar="KEY=VALUE",
                   help="trial-config overrides applied after SMALL_OVERRIDES")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial worker uses 1 CPU)")
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--replot", action="store_true", help="only redo table, JSON and plot from --out's points")


def replotted(args: argparse.Namespace, report: Callable[..., None]) -> bool:
    """With `--replot`, redo the output from the results saved at `--out` (True); else nothing (False)."""
    if not args.replot:
        return False
    old = json.loads(args.out.read_text())
    report(old["points"], old["settings"], old["costs"], old["machine"], args.out)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=32, help="trials per (sampler, seed)")
    p.add_argument("--seeds", type=int, default=3, help="sampler seeds 0..seeds-1")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="optimizer steps per point; 0: as many as a real trial of the config takes")
    p.add_argument("--trial-seeds", type=int, nargs="+", default=[0],
                   help="training seeds per point, averaged (the preset's are 0 1 2; one keeps it cheap)")
    add_common_args(p, "benchmarks/results/search_efficiency.json")
    args = p.parse_args(argv)
    if replotted(args, report):
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    objective = build_objective(args.cache_dir, args.steps or None, args.trial_seeds, args.set)
    setup_seconds = time.perf_counter() - started
    records = [r for seed in range(args.seeds) for s in args.samplers
               for r in run_study(objective, s, seed, args.trials)]
    settings = {"preset": PRESET, "overrides": [*SMALL_OVERRIDES, *args.set], "steps": objective.steps,
                "trial_seeds": args.trial_seeds, "trials": args.trials, "sampler_seeds": list(range(args.seeds)),
                "samplers": args.samplers, "threads": args.threads, "objectives": list(OBJECTIVES),
                "reference": [0.0, 0.0], "forget_items": len(objective.data.forget),
                "retain_items": len(objective.data.retain),
                "eval_max_new_tokens": objective.base["eval"]["max_new_tokens"]}
    costs = {**cost_summary(records), "setup_seconds": setup_seconds, "wall_seconds": time.perf_counter() - started}
    report(records, settings, costs, machine(), args.out)


if __name__ == "__main__":
    main()
