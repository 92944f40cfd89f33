"""The `clreg-sweep` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


def _trial_config(args):
    from orchestrator.config_files import load_config
    from trainables.config import TrialConfig

    return load_config(TrialConfig, args.config, args.set)


def cmd_prepare(args) -> int:
    """Fine-tune (or reuse) the target and oracle models of a config."""
    from orchestrator.cluster import ray_cluster
    from orchestrator.preflight import preflight
    from orchestrator.prepare import prepare

    cfg = _trial_config(args)
    bench = preflight(cfg)
    with ray_cluster(args.address):
        prepared = prepare(cfg, log=console.print, bench=bench)
    _print_prepare_report(prepared.report)
    print(prepared.target_dir)
    return 0


def cmd_run(args) -> int:
    """Run one unlearning trial (base method + CLReg) as a Ray Train + DeepSpeed job."""
    from orchestrator.cluster import check_resources_before_start, ray_cluster, warn_if_trial_does_not_fit
    from orchestrator.preflight import preflight
    from orchestrator.prepare import prepare
    from trainables.engine.trainer import build_trainer, fit_to_end
    from trainables.engine.worker import WorkerJob

    cfg = _trial_config(args)
    bench = preflight(cfg)
    name = args.name or time.strftime("run-%Y%m%d-%H%M%S")
    out = Path(cfg.output_dir).resolve() / name
    if out.exists():
        raise ValueError(f"output directory {out} exists; choose another --name or remove it")
    check_resources_before_start(cfg.train, args.address)
    with ray_cluster(args.address):
        warn_if_trial_does_not_fit(cfg.train, console.print)
        prepared = prepare(cfg, log=console.print, bench=bench)
        job = WorkerJob(trial=cfg.model_dump(mode="json", by_alias=True), task="unlearn",
                        model_dir=prepared.target_dir, output_dir=str(out),
                        oracle_reference=prepared.oracle_reference)
        console.print(f"run: {cfg.method.name} + CLReg({'on' if cfg.clreg.enabled else 'off'}) with "
                      f"{cfg.train.num_workers} worker(s), ZeRO-{cfg.train.zero_stage} -> {out}")
        try:
            final = fit_to_end(build_trainer(job, cfg, storage_path=str(out / "ray"), name="trial"), out)
        except Exception as e:  # a failed or diverged trial: say why, exit 1 (not 2: the input was valid)
            console.print(f"[red]trial failed:[/red] {escape(f'{type(e).__name__}: {e}')}")
            return 1
    from trainables.evaluation import load_eval

    _print_metrics({**final, **load_eval(out).aggregates_json()})
    console.print(f"run: final model, eval_aggregates.json and eval_per_item.json in {out}")
    return 0


def cmd_eval(args) -> int:
    """Evaluate a saved model directory on a benchmark, optionally also as open-unlearning's log.

    The oracle reference is `--oracle-reference` (our `oracle_reference.json` or an open-unlearning log, told apart
    by content), else the config's `prepare.oracle_logs`.
    """
    from orchestrator.preflight import preflight
    from orchestrator.prepare import cache_oracle_log
    from trainables.evaluation import evaluate_saved_model, load_eval
    from trainables.metrics.oracle_logs import (
        LOG_FILES,
        OracleLogError,
        expected_log_items,
        is_open_unlearning_log,
        write_open_unlearning_logs,
    )

    if args.format == "open-unlearning" and not args.out:
        raise ValueError(f"eval --format open-unlearning needs --out DIR: the directory that receives "
                         f"{' / '.join(LOG_FILES.values())} beside eval_aggregates.json")
    cfg = _trial_config(args)
    bench = preflight(cfg)
    oracle = args.oracle_reference or cfg.prepare.oracle_logs
    try:
        if oracle and is_open_unlearning_log(oracle):
            oracle = cache_oracle_log(oracle, cfg.prepare.cache_dir, expected_log_items(bench))
    except OracleLogError as e:
        flag = "--oracle-reference" if args.oracle_reference else "prepare.oracle_logs"
        raise OracleLogError(f"{flag}: {e}") from None
    aggregates = evaluate_saved_model(args.model_dir, cfg, oracle_path=oracle, out_dir=args.out)
    if args.format == "open-unlearning":
        written = write_open_unlearning_logs(load_eval(args.out), bench.family, args.out)
        console.print(f"eval: open-unlearning log {written}", soft_wrap=True)
    _print_metrics(aggregates)
    return 0


def _sweep_config(args):
    from orchestrator.sweep_config import load_sweep_config

    return load_sweep_config(args.file, ([f"space={args.preset}"] if args.preset else []) + args.set)


def cmd_sweep(args) -> int:
    """Run a sweep from a sweep file or a preset."""
    from orchestrator.sweep import validate_sweep

    return _run_sweep(validate_sweep(_sweep_config(args)), args.address, resume=False)


def cmd_validate(args) -> int:
    """Every check a sweep makes before it starts, without starting anything."""
    from orchestrator.cluster import check_trial_fits, this_machine
    from orchestrator.sweep import validate_sweep

    checked = validate_sweep(_sweep_config(args))
    cfg = checked.cfg
    check_trial_fits(cfg.base.train, this_machine(), "this machine (a sweep without --address runs here)")
    seeds = checked.space.repeat_seeds
    each = f" (each the mean of seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    print(f"{args.file or 'defaults'}: valid: sweep {cfg.name!r}, {checked.num_trials} trials{each} of "
          f"{checked.method_text} ({checked.search_text}) on {cfg.base.data.benchmark} ({checked.num_layers}-layer "
          f"{cfg.base.model.name_or_path}), searching {', '.join(checked.space.params)}; objectives "
          f"{', '.join(f'{o.metric} ({o.mode})' for o in cfg.objectives)}")
    print("\n".join(checked.data.summary_lines()))
    return 0


def cmd_quickstart(args) -> int:
    """The tiny preset on synthetic TOFU: prepare (cached) and an 8-trial SimNPO + CLReg sweep."""
    from orchestrator.config_files import apply_overrides, validate
    from orchestrator.sweep import validate_sweep
    from orchestrator.sweep_config import SweepConfig

    data = apply_overrides(QUICKSTART, [f"name=quickstart-{time.strftime('%Y%m%d-%H%M%S')}", *args.set])
    return _run_sweep(validate_sweep(validate(SweepConfig, data, "quickstart")), args.address, resume=False)


def cmd_resume(args) -> int:
    """Continue an interrupted sweep: same study, same MLflow parent run, no duplicate trials."""
    from orchestrator.sweep import load_sweep_dir, validate_sweep

    return _run_sweep(validate_sweep(load_sweep_dir(args.sweep_dir)), args.address, resume=True)


def cmd_report(args) -> int:
    """Tables and plots of a sweep's results in SWEEP_DIR/report/, also logged to its MLflow parent run."""
    from orchestrator.report import REPORT_DIR, sweep_report

    report = sweep_report(args.sweep_dir, html=args.html)
    print(report.markdown)
    console.print(f"written to {report.directory}: {', '.join(report.files)}; logged to the MLflow parent run "
                  f"under {REPORT_DIR}/", soft_wrap=True)
    return 0


def cmd_ui(args) -> int:
    """The MLflow dashboard on a sweep: start `mlflow server` on its store (or use its server), print the links."""
    from orchestrator.dashboard import serve

    return serve(args.sweep_dir, args.host, args.port, out=lambda line: print(line, flush=True),
                 log=lambda message: console.print(escape(message), soft_wrap=True))


def _run_sweep(checked, address: str | None, resume: bool) -> int:
    from orchestrator.sweep import run_sweep

    started = time.perf_counter()
    outcome = run_sweep(checked, address=address, resume=resume, log=console.print)
    _print_front(outcome.summary, checked.cfg.objective_modes)
    # soft_wrap: paths and the command stay on one line, so they can be copied.
    console.print(f"sweep {checked.cfg.name}: {outcome.summary.num_trials} trials complete, "
                  f"{outcome.num_errors} failed, {outcome.num_diverged} diverged, "
                  f"{time.perf_counter() - started:.0f} s; results in "
                  f"{outcome.paths.root}", soft_wrap=True)
    console.print("Browse the trials and the Pareto front (parent run, artifacts pareto/) in the MLflow dashboard:\n"
                  f"  clreg-sweep ui {outcome.paths.root}", soft_wrap=True)
    if outcome.interrupted:
        console.print(f"interrupted: `clreg-sweep resume {outcome.paths.root}` continues it", soft_wrap=True)
        return EXIT_INTERRUPTED
    return 0 if outcome.num_errors == 0 else 1


def _print_front(summary, objectives: list[tuple[str, str]]) -> None:
    table = Table(title=f"Pareto front ({len(summary.front)} of {summary.num_trials} trials, "
                        f"hypervolume {summary.hypervolume:.4g})")
    keys = [m for m, _ in objectives]
    for k in ("trial", *keys, "parameters"):
        table.add_column(k, justify="right" if k in keys else "left")
    for row in summary.front:
        table.add_row(str(row.get("trial_id", "")), *(_cell(row.get(k)) for k in keys), str(row.get("label", "")))
    Console().print(table)


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))


def _print_metrics(metrics: dict) -> None:
    """Print the scalar metrics, each missing one with its reason and a partial one (model utility over fewer parts)
    with what it left out, from the record's `missing_reasons`."""
    from trainables.metrics.evaluate import MISSING_REASONS_KEY, PARTIAL_SUFFIX

    reasons = metrics.get(MISSING_REASONS_KEY) or {}
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("why missing / partial")
    for k in sorted(metrics):
        v = metrics[k]
        if isinstance(v, (int, float)) or v is None:
            note = reasons.get(k if v is None else k + PARTIAL_SUFFIX)
            shown = f"{v:.4g}" if v is not None else ("missing" if note else "-")
            table.add_row(k, shown, escape(note or ""))
    Console().print(table)


def _print_prepare_report(report: dict) -> None:
    if not report:
        return
    columns = ("forget_prob", "forget_rouge", "retain_prob", "retain_rouge", "model_utility")
    table = Table(title=f"prepared models ({report.get('key', '')}): base = before fine-tuning")
    table.add_column("model")
    for col in columns:
        table.add_column(col, justify="right")
    for split in ("base", "target", "oracle"):
        row = report.get(split, {})
        table.add_row(split, *(f"{row[c]:.3f}" if isinstance(row.get(c), (int, float)) else "-" for c in columns))
    Console().print(table)


# The embedded quickstart sweep: the tiny preset on synthetic TOFU, SimNPO + CLReg over tau, lambda, layer, lr.
QUICKSTART: dict = {
    # 10 epochs (40 steps of 4 forget examples): with 3, no lr in the preset's range moved the tiny target's forget
    # set far enough to change forget quality, and the front was one vertical line; each trial is ~3 s longer.
    "base": {"method": {"name": "simnpo"}, "train": {"epochs": 10}},
    "space": "clreg-default",
    # One seed per point keeps the quickstart under 10 minutes on 2 cores; the preset's 3 seeds triple it.
    "search": {"sampler": "tpe", "num_trials": 8, "max_concurrent": 2, "trial_seeds": [0]},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clreg-sweep", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp, required: bool = False):
        sp.add_argument("config", nargs=None if required else "?", help="YAML config (embedded defaults if omitted)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set clreg.tau=0.3 (repeatable)")

    sp = sub.add_parser("run", help="run one unlearning trial")
    with_config(sp)
    sp.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    sp.add_argument("--name", help="run name (directory under output_dir)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("quickstart", help="prepare the tiny preset and run an 8-trial sweep (the main job)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a sweep field")
    sp.add_argument("--address")
    sp.set_defaults(func=cmd_quickstart)

    sp = sub.add_parser("sweep", help="run a sweep: Ray Tune + Optuna, results in MLflow")
    sp.add_argument("file", nargs="?", help="sweep YAML (embedded defaults if omitted)")
    sp.add_argument("--preset", help="search space preset: clreg-default, tau-ablation, layer-ablation, "
                                     "method-compare")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a sweep field, e.g. --set search.num_trials=16 --set base.train.epochs=2")
    sp.add_argument("--address")
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("validate", help="check a sweep file without running anything (exit 0 valid, 2 not); "
                                         "trial resources are checked against this machine")
    sp.add_argument("file", nargs="?", help="sweep YAML (embedded defaults if omitted)")
    sp.add_argument("--preset")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("resume", help="continue an interrupted sweep")
    sp.add_argument("sweep_dir")
    sp.add_argument("--address")
    sp.set_defaults(func=cmd_resume)

    sp = sub.add_parser("report", help="tables and plots of a sweep's results in SWEEP_DIR/report/ "
                                       "(report.md + PNGs), also logged to the MLflow parent run")
    sp.add_argument("sweep_dir")
    sp.add_argument("--html", action="store_true",
                    help="also write report.html: one self-contained page, plots embedded")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("ui", help="the MLflow dashboard on a sweep's results: starts `mlflow server` on its "
                                   "store and prints the links to its experiment, parent run and Pareto front")
    sp.add_argument("sweep_dir", nargs="?", help="sweep directory (default: the MLflow store of this directory)")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine "
                                                        "only)")
    sp.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    sp.set_defaults(func=cmd_ui)

    sp = sub.add_parser("prepare", help="fine-tune and cache the target and oracle models")
    with_config(sp)
    sp.add_argument("--address")
    sp.set_defaults(func=cmd_prepare)

    sp = sub.add_parser("eval", help="evaluate a saved model")
    sp.add_argument("model_dir")
    with_config(sp)
    sp.add_argument("--oracle-reference", help="the oracle's reference: oracle_reference.json written by prepare, "
                                                "or a retain model's open-unlearning TOFU_EVAL.json / MUSE_EVAL.json "
                                                "(default: the config's prepare.oracle_logs)")
    sp.add_argument("--out", help="directory for eval_aggregates.json and eval_per_item.json")
    sp.add_argument("--format", choices=("clreg", "open-unlearning"), default="clreg",
                    help="clreg: those two files; open-unlearning: also TOFU_EVAL.json / MUSE_EVAL.json in "
                         "open-unlearning's layout (needs --out)")
    sp.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    from orchestrator.config_files import ConfigError
    from orchestrator.tracking import TrackingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, TrackingError) as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
