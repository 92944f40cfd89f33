"""Per-trial fixed overhead (benchmarks issue, item 3; warm slots, issue 18): where a trial's time goes outside
training and evaluation, cold (a Ray Train run per trial) and warm (a slot that runs trial after trial).

Part 1, one run at a time on a local Ray cluster, on the quickstart's trial (tiny preset, synthetic TOFU,
prepared once and cached), interleaved round by round:

- `floor`: a Ray Train V2 run (same scaling, backend and worker environment) whose training function only reports:
  what Ray Train itself costs to start and stop a worker group;
- `trial`: the shipped trial (`build_trainer` + `fit_to_end`), split by `trainables.engine.trainer.fixed_costs` into
  `startup_seconds` (fit -> rank 0 enters the training function), rank 0's `setup/*_seconds` (DeepSpeed import,
  data, model, engine, reference model, checkpoint restore), `train_seconds`, `eval_seconds` and
  `teardown_seconds` (final report -> fit returns);
- `seeds3`: the same trial with 3 seeds, as a `clreg-default` trial runs them: one Ray Train run that trains and
  evaluates each seed in turn (`WorkerJob.seeds`); its fixed cost is the run's wall time minus the three seeds'
  training and evaluation, against three times the `trial` run's when each seed was a run of its own;
- `warm`: the same trial in a warm slot (`orchestrator.slots.run_in_slot`), the same phases; the slot's first
  trial (which starts the slot) is reported apart as `warm_first`.

Part 2, a warm slot's memory: `--memory-trials` trials in one slot, the largest worker's resident memory after each
(engines rebuilt in one process are known to leak; the pool recycles a slot past `search.slot_max_growth_gb`).

Part 3, the quickstart sweep itself (`--sweep-trials` trials, 2 at a time, its own MLflow store), cold then warm
(`search.slots`): the sweep's wall time over the sum of its trials' training + evaluation time, and each trial's
wall time (its MLflow child run, from Tune's trial start to its end) minus its training and evaluation.

    python -m benchmarks.trial_overhead [--rounds 3] [--memory-trials 30] [--sweep-trials 8]
        [--out benchmarks/results/trial_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, write_result

PHASES = ("startup_seconds", "setup/import_seconds", "setup/data_seconds", "setup/model_seconds",
          "setup/engine_seconds", "setup/reference_seconds", "setup/restore_seconds", "train_seconds",
          "eval_seconds", "teardown_seconds", "run_seconds")


def _floor_worker(config: dict) -> None:
    """A training function that does nothing but report (and tell the driver when it ran)."""
    import ray.train

    entered = time.time()
    ray.train.report({})
    Path(config["out"]).write_text(json.dumps({"worker_started_at": entered, "reported_at": time.time()}))


def _floor_run(cfg, work: Path) -> dict[str, float]:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from trainables.engine.outcome import fixed_costs
    from trainables.engine.trainer import WORKER_ENV

    out = work / f"floor-{time.time_ns()}.json"
    trainer = TorchTrainer(
        _floor_worker, train_loop_config={"out": str(out)}, torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.train.num_workers,
                                               resources_per_worker={"CPU": cfg.train.cpus_per_worker}),
        run_config=ray.train.RunConfig(name=out.stem, storage_path=str(work / "ray"),
                                       worker_runtime_env={"env_vars": {**WORKER_ENV, "DS_ACCELERATOR": "cpu"}}),
    )
    started = time.time()
    trainer.fit()
    return fixed_costs(json.loads(out.read_text()), started, time.time())


def _shipped_run(cfg, prepared, out: Path, seeds: list[int]) -> dict:
    """The shipped trial (`build_trainer` + `fit_to_end`) into `out`, training `seeds` in turn when given."""
    from trainables.engine.trainer import build_trainer, fit_to_end
    from trainables.engine.worker import WorkerJob

    job = WorkerJob(trial=cfg, task="unlearn", model_dir=prepared.target_dir,
                    output_dir=str(out), oracle_reference=prepared.oracle_reference, seeds=seeds)
    return fit_to_end(build_trainer(job, storage_path=str(out / "ray"), name=out.name), out)


def _trial_run(cfg, prepared, work: Path) -> dict[str, float]:
    final = _shipped_run(cfg, prepared, work / f"trial-{time.time_ns()}", [])
    figures = {k: final[k] for k in PHASES if k in final}
    return {**figures, "overhead_seconds": final["run_seconds"] - final["train_seconds"] - final["eval_seconds"]}


def _warm_run(pool, cfg, prepared, work: Path) -> dict[str, float]:
    """The shipped trial in a slot of `pool`, split into the same phases as a cold one."""
    from orchestrator.slots import run_in_slot
    from trainables.engine.worker import WorkerJob

    job = WorkerJob(trial=cfg, task="unlearn", model_dir=prepared.target_dir,
                    output_dir=str(work / f"warm-{time.time_ns()}"), oracle_reference=prepared.oracle_reference)
    final = run_in_slot(pool, job, max_failures=0, relay=lambda _: None)
    figures = {k: final[k] for k in PHASES if k in final}
    return {**figures, "overhead_seconds": final["run_seconds"] - final["train_seconds"] - final["eval_seconds"]}


def _slot_memory(pool, cfg, prepared, work: Path, trials: int) -> list[int]:
    """The largest worker's resident memory (bytes) of the slot after each of `trials` trials."""
    import ray

    rss = []
    for i in range(trials):
        _warm_run(pool, cfg, prepared, work)
        (slot,) = ray.get(pool.stats.remote())
        rss.append(max(slot["rss"]))
        print(f"memory: trial {i + 1}/{trials}: {rss[-1] / 2**20:.0f} MiB", flush=True)
    return rss


def _seeds_run(cfg, prepared, work: Path, seeds: list[int]) -> dict[str, float]:
    """One Ray Train run training `seeds` in turn; its wall time, start, end and the seeds' summed compute."""
    from trainables.report_keys import finished_outcome, seed_dir

    out = work / f"seeds-{time.time_ns()}"
    run = _shipped_run(cfg, prepared, out, seeds)
    per_seed = [finished_outcome(seed_dir(out, s)) for s in seeds]
    compute = sum(r["train_seconds"] + r["eval_seconds"] for r in per_seed)
    return {"startup_seconds": run["startup_seconds"], "teardown_seconds": run["teardown_seconds"],
            "run_seconds": run["run_seconds"], "compute_seconds": compute,
            "overhead_seconds": run["run_seconds"] - compute}


def _quickstart_sweep(name: str, storage: Path, trials: int, slots: str) -> dict:
    """The quickstart with `trials` trials on `slots` slots, into its own store; its wall time and every child
    run's figures."""
    from mlflow import MlflowClient

    from orchestrator import cli

    uri = f"sqlite:///{storage / 'mlflow.db'}"
    started = time.time()
    code = cli.main(["quickstart", "--set", f"search.num_trials={trials}", "--set", f"search.slots={slots}",
                     "--set", f"storage.dir={storage}",
                     "--set", f"mlflow.tracking_uri={uri}", "--set", f"mlflow.experiment={name}"])
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"the benchmark sweep failed (exit {code})")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    rows = [{"trial": r.data.tags["clreg.trial_id"], "wall_seconds": (r.info.end_time - r.info.start_time) / 1000,
             "train_seconds": r.data.metrics["train_seconds"], "eval_seconds": r.data.metrics["eval_seconds"]}
            for r in children]
    compute = sum(r["train_seconds"] + r["eval_seconds"] for r in rows)
    return {"wall_seconds": wall, "trials": rows, "compute_seconds": compute,
            "overhead_ratio": wall / compute,
            "median_trial_overhead_seconds": statistics.median(r["wall_seconds"] - r["train_seconds"]
                                                               - r["eval_seconds"] for r in rows)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-trials", type=int, default=30, help="0 skips part 2")
    parser.add_argument("--sweep-trials", type=int, default=8, help="0 skips part 3")
    parser.add_argument("--out", default="benchmarks/results/trial_overhead.json")
    args = parser.parse_args(argv)

    from orchestrator.cli import QUICKSTART
    from orchestrator.cluster import ray_cluster
    from orchestrator.config_files import validate
    from orchestrator.preflight import preflight
    from orchestrator.prepare import prepare
    from orchestrator.slots import SlotShape, start_pool
    from trainables.config import TrialConfig

    cfg = validate(TrialConfig, QUICKSTART["base"], "quickstart base")
    runs: dict[str, list[dict]] = {"floor": [], "trial": [], "seeds3": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="trial-overhead-") as tmp:
        work = Path(tmp)
        with ray_cluster(num_cpus=2):  # the local cluster the CLI starts, with its settings
            prepared = prepare(cfg, log=print, bench=preflight(cfg))
            pool = start_pool("trial-overhead", SlotShape.of(cfg.train), recycle_trials=10**6, max_growth_gb=10**6)
            warm_first = _warm_run(pool, cfg, prepared, work)
            print(f"warm slot's first trial: {warm_first}", flush=True)
            for i in range(args.rounds):
                runs["floor"].append(_floor_run(cfg, work))
                runs["trial"].append(_trial_run(cfg, prepared, work))
                runs["seeds3"].append(_seeds_run(cfg, prepared, work, [0, 1, 2]))
                runs["warm"].append(_warm_run(pool, cfg, prepared, work))
                print(f"round {i + 1}/{args.rounds}: " + "\n  ".join(f"{k} {v[-1]}" for k, v in runs.items()),
                      flush=True)
            memory = _slot_memory(pool, cfg, prepared, work, args.memory_trials) if args.memory_trials else []
        sweeps = {mode: _quickstart_sweep(f"trial-overhead-{mode}", work / f"sweep-{mode}", args.sweep_trials, mode)
                  for mode in ("cold", "warm")} if args.sweep_trials else {}

    medians = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items()}
    for kind, m in medians.items():
        print(f"{kind} (median of {args.rounds}): " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
    print(f"3 seeds: fixed cost {medians['seeds3']['overhead_seconds']:.1f} s in one run, against "
          f"{3 * medians['trial']['overhead_seconds']:.1f} s as three runs")
    print(f"warm: fixed cost {medians['warm']['overhead_seconds']:.2f} s a trial after the slot's first "
          f"({warm_first['overhead_seconds']:.2f} s), against {medians['trial']['overhead_seconds']:.2f} s cold")
    if memory:
        print(f"warm slot memory over {len(memory)} trials: {memory[0] / 2**20:.0f} MiB after the first, "
              f"{max(memory) / 2**20:.0f} MiB at most, {memory[-1] / 2**20:.0f} MiB after the last")
    for mode, sweep in sweeps.items():
        print(f"{mode} sweep of {len(sweep['trials'])} trials: {sweep['wall_seconds']:.0f} s wall over "
              f"{sweep['compute_seconds']:.1f} s of training + evaluation = x{sweep['overhead_ratio']:.2f}; "
              f"median trial overhead {sweep['median_trial_overhead_seconds']:.1f} s")
    write_result(args.out, {"benchmark": "trial_overhead", "machine": machine(), "rounds": args.rounds,
                            "config": "quickstart base (tiny preset, synthetic TOFU), 1 worker, ZeRO per preset",
                            "medians": medians, "runs": runs, "warm_first": warm_first, "slot_rss_bytes": memory,
                            "sweeps": sweeps})


if __name__ == "__main__":
    main()
