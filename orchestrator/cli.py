"""The `clreg-sweep` command line.

Exit codes: 0 done; 1 an internal failure (one line on the console, the traceback in a log file; `--debug` shows
it); 2 an input refused before anything ran (the message names the file or option and what is allowed); 130
interrupted (Ctrl-C), with a line saying what was kept and how to continue.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
# `run --name`: one folder under output_dir, spelled like a sweep name, short enough for every file system.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_RUN_NAME_CHARS = 100
MESSAGE_LINE_CHARS = 300


class Interrupted(KeyboardInterrupt):
    """Ctrl-C inside a command, carrying the sentence that says what was kept and how to continue.

    A KeyboardInterrupt still, so no `except Exception` on the way up to `main` mistakes it for a failure.
    """


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
    try:
        with ray_cluster(args.address):
            prepared = prepare(cfg, log=console.print, bench=bench)
    except KeyboardInterrupt:
        cache = Path(cfg.prepare.cache_dir).resolve() / "prepared"
        raise Interrupted(f"prepare stopped; its unfinished build was removed, and the finished entries in {cache} "
                          "are kept and reused: run the same command again to continue") from None
    _print_prepare_report(prepared.report)
    print(prepared.target_dir)
    return 0


def cmd_run(args) -> int:
    """Run one unlearning trial (base method + CLReg) as a Ray Train + DeepSpeed job."""
    from orchestrator.cluster import check_resources_before_start
    from orchestrator.preflight import preflight

    cfg = _trial_config(args)
    bench = preflight(cfg)
    name = args.name or time.strftime("run-%Y%m%d-%H%M%S")
    out = Path(cfg.output_dir).resolve() / name
    if out.exists():
        raise ValueError(f"output directory {out} exists; choose another --name or remove it")
    check_resources_before_start(cfg.train, args.address)
    try:
        return _run_trial(args, cfg, bench, out)
    except KeyboardInterrupt:
        raise Interrupted(_kept_run(out)) from None


def _run_trial(args, cfg, bench, out: Path) -> int:
    """`run` past its checks: prepare, train and evaluate one trial into `out` on a Ray cluster."""
    from orchestrator.attack_reference import trial_attack_reference
    from orchestrator.cluster import ray_cluster, warn_if_trial_does_not_fit
    from orchestrator.prepare import prepare
    from trainables.engine.trainer import build_trainer, fit_to_end
    from trainables.engine.worker import WorkerJob

    with ray_cluster(args.address):
        warn_if_trial_does_not_fit(cfg.train, console.print)
        prepared = prepare(cfg, log=console.print, bench=bench)
        job = WorkerJob(trial=cfg, task="unlearn", model_dir=prepared.target_dir, output_dir=str(out),
                        oracle_reference=prepared.oracle_reference,
                        attack_reference=trial_attack_reference(cfg, prepared, console.print))
        console.print(f"run: {cfg.method.name} + CLReg({'on' if cfg.clreg.enabled else 'off'}) with "
                      f"{cfg.train.num_workers} worker(s), ZeRO-{cfg.train.zero_stage} -> {out}")
        try:
            final = fit_to_end(build_trainer(job, storage_path=str(out / "ray"), name="trial"), out)
        except Exception as e:  # a failed or diverged trial: say why, exit 1 (not 2: the input was valid)
            console.print(f"[red]trial failed:[/red] {escape(f'{type(e).__name__}: {e}')}")
            return 1
    from trainables.evaluation import load_eval

    _print_metrics({**final, **load_eval(out).aggregates_json()})
    console.print(f"run: final model, eval_aggregates.json and eval_per_item.json in {out}")
    return 0


def _kept_run(out: Path) -> str:
    """After Ctrl-C in `run`: keep a run folder that holds a checkpoint or the final model, remove one that holds
    nothing usable (a later `run --name` of the same name would be refused by it), and say which."""
    usable = sorted(str(p.relative_to(out)) for p in (*out.glob("ray/*/checkpoint_*"), out / "final_model")
                    if p.exists()) if out.is_dir() else []
    if not usable:
        shutil.rmtree(out, ignore_errors=True)
        return (f"run stopped before it saved anything; its folder {out} was removed: run the same command again "
                "to start over")
    return (f"run stopped; {out} is kept with {', '.join(usable)}: remove it or choose another --name to run "
            "again")


def cmd_eval(args) -> int:
    """Evaluate a saved model directory on a benchmark, optionally also as open-unlearning's log.

    The oracle reference is `--oracle-reference` (our `oracle_reference.json` or an open-unlearning log, told apart
    by content), else the config's `prepare.oracle_logs`.
    """
    from orchestrator.preflight import preflight
    from orchestrator.prepare import cache_oracle_log
    from trainables.evaluation import evaluate_saved_model, load_eval
    from trainables.metrics.evaluate import AGGREGATES_FILE, PER_ITEM_FILE
    from trainables.metrics.oracle_logs import (
        LOG_FILES,
        OracleLogError,
        expected_log_items,
        is_open_unlearning_log,
        write_open_unlearning_logs,
    )
    from trainables.model.loading import ModelError, check_model_source

    if args.format == "open-unlearning" and not args.out:
        raise ValueError(f"eval --format open-unlearning needs --out DIR: the directory that receives "
                         f"{' / '.join(LOG_FILES.values())} beside eval_aggregates.json")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"eval --out {args.out} is a file; give a directory (created if missing) for "
                         "eval_aggregates.json and eval_per_item.json")
    try:
        check_model_source(args.model_dir)
    except ModelError:
        raise ValueError(f"eval MODEL_DIR {args.model_dir} is not a directory; allowed: a saved "
                         "model's directory or an HF hub name (org/name)") from None
    cfg = _trial_config(args)
    bench = preflight(cfg)
    oracle = args.oracle_reference or cfg.prepare.oracle_logs
    try:
        if oracle and is_open_unlearning_log(oracle):
            oracle = cache_oracle_log(oracle, cfg.prepare.cache_dir, expected_log_items(bench))
    except OracleLogError as e:
        flag = "--oracle-reference" if args.oracle_reference else "prepare.oracle_logs"
        raise OracleLogError(f"{flag}: {e}") from None
    outputs = [AGGREGATES_FILE, PER_ITEM_FILE, *([LOG_FILES[bench.family]] if args.format == "open-unlearning"
                                                  else [])]
    with _outputs_removed_on_interrupt(Path(args.out) if args.out else None, outputs):
        aggregates = evaluate_saved_model(args.model_dir, cfg, oracle_path=oracle, out_dir=args.out)
        if args.format == "open-unlearning":
            written = write_open_unlearning_logs(load_eval(args.out), bench.family, args.out)
            console.print(f"eval: open-unlearning log {written}", soft_wrap=True)
    _print_metrics(aggregates)
    return 0


@contextmanager
def _outputs_removed_on_interrupt(out: Path | None, names: list[str]) -> Iterator[None]:
    """Ctrl-C while `eval` writes `names` into `out`: remove the ones this command wrote (a mixed set of new and
    old files would pass for one evaluation) and `out` itself when this command created it; earlier files stay."""
    created = out is not None and not out.exists()
    started = time.time()
    try:
        yield
    except KeyboardInterrupt:
        if out is None:
            raise Interrupted("eval stopped; it had written nothing: run the same command again") from None
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for name in names:
                if (out / name).is_file() and (out / name).stat().st_mtime >= started:
                    (out / name).unlink()
        raise Interrupted(f"eval stopped; its partial outputs in {out} were removed (files from before are kept): "
                          "run the same command again") from None


def _sweep_config(args):
    from orchestrator.sweep_config import load_sweep_config

    return load_sweep_config(args.file, ([f"space={args.preset}"] if args.preset else []) + args.set)


def cmd_sweep(args) -> int:
    """Run a sweep from a sweep file or a preset."""
    from orchestrator.sweep import validate_sweep

    return _run_sweep(validate_sweep(_sweep_config(args), args.address), args.address, resume=False)


def cmd_validate(args) -> int:
    """Every check a sweep makes before it starts, without starting anything."""
    from orchestrator.cluster import check_trial_fits, this_machine
    from orchestrator.sweep import slot_mode, validate_sweep

    checked = validate_sweep(_sweep_config(args))
    cfg = checked.cfg
    check_trial_fits(cfg.base.train, this_machine(), "this machine (a sweep without --address runs here)")
    seeds = checked.space.repeat_seeds
    each = f" (each the mean of seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    print(f"{args.file or 'defaults'}: valid: sweep {cfg.name!r}, {checked.num_trials} trials{each} of "
          f"{checked.method_text} ({checked.search_text}) on {cfg.base.data.benchmark} ({checked.num_layers}-layer "
          f"{cfg.base.model.name_or_path}), searching {', '.join(checked.space.params)}; objectives "
          f"{', '.join(f'{o.metric} ({o.mode})' for o in cfg.objectives)}")
    if cfg.search.constraints:
        from orchestrator.constraints import as_written

        print(f"constraints: {'; '.join(as_written(c) for c in cfg.search.constraints)} (relative bounds are resolved "
              "against the reference points when the sweep starts)")
    if checked.warm_sources:
        print(f"warm start: {', '.join(cfg.search.warm_start)} (same parameters and objectives; their finished "
              "trials are added when the sweep's study is created)")
    mode, why = slot_mode(cfg.search, checked.space)
    print(f"trials run on {mode} slots ({why})")
    print("\n".join(checked.data.summary_lines()))
    return 0


def cmd_quickstart(args) -> int:
    """The tiny preset on synthetic TOFU: prepare (cached) and an 8-trial SimNPO + CLReg sweep."""
    from orchestrator.config_files import apply_overrides, validate
    from orchestrator.sweep import validate_sweep
    from orchestrator.sweep_config import SweepConfig

    data = apply_overrides(QUICKSTART, [f"name=quickstart-{time.strftime('%Y%m%d-%H%M%S')}", *args.set])
    checked = validate_sweep(validate(SweepConfig, data, "quickstart"), args.address)
    return _run_sweep(checked, args.address, resume=False)


def cmd_resume(args) -> int:
    """Continue an interrupted sweep where its folder is now: same study, same MLflow parent run, no duplicate
    trials; its files are checked before Ray starts."""
    from orchestrator.sweep import check_resumable, load_sweep_dir, validate_sweep

    cfg = load_sweep_dir(args.sweep_dir, log=lambda line: console.print(escape(line), soft_wrap=True))
    check_resumable(cfg)
    return _run_sweep(validate_sweep(cfg, args.address), args.address, resume=True)


def cmd_report(args) -> int:
    """Tables and plots of a sweep's results in SWEEP_DIR/report/, also logged to its MLflow parent run."""
    from orchestrator.report import REPORT_DIR, sweep_report

    report = sweep_report(args.sweep_dir, html=args.html)
    print(report.markdown)
    console.print(f"written to {report.directory}: {', '.join(report.files)}; logged to the MLflow parent run "
                  f"under {REPORT_DIR}/", soft_wrap=True)
    return 0


def cmd_export(args) -> int:
    """The Pareto front's models as plain Hugging Face folders, with a manifest (`orchestrator.export`)."""
    from orchestrator.export import MANIFEST, export_front

    folder, models = export_front(args.sweep_dir, args.out,
                                  log=lambda line: console.print(escape(line), soft_wrap=True))
    console.print(f"exported {len(models)} front model(s) to {folder} (list: {MANIFEST})", soft_wrap=True)
    return 0


def cmd_ui(args) -> int:
    """The MLflow dashboard on a sweep: start `mlflow server` on its store (or use its server), print the links."""
    from orchestrator.dashboard import serve

    return serve(args.sweep_dir, args.host, args.port, out=lambda line: print(line, flush=True),
                 log=lambda message: console.print(escape(message), soft_wrap=True))


def _run_sweep(checked, address: str | None, resume: bool) -> int:
    from orchestrator.sweep import run_sweep, sweep_paths

    started = time.perf_counter()
    try:
        outcome = run_sweep(checked, address=address, resume=resume, log=console.print)
    except KeyboardInterrupt:  # before Tune ran (Tune itself stops cleanly on Ctrl-C and returns)
        root = sweep_paths(checked.cfg).root
        if (root / "tune").is_dir():
            raise Interrupted(f"sweep stopped; {root} is kept: `clreg-sweep resume {root}` continues it") from None
        raise Interrupted(f"sweep stopped before its first trial; remove {root} (if it was created) and start the "
                          "sweep again") from None
    _print_front(outcome.summary, checked.cfg.objective_modes)
    for note in outcome.notes:
        console.print(note)
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


def run_name(text: str) -> str:
    """`run --name`: one path component under output_dir (no '/', no '..', not absolute), refused by argparse."""
    if len(text) > MAX_RUN_NAME_CHARS:
        raise argparse.ArgumentTypeError(f"at most {MAX_RUN_NAME_CHARS} characters (one directory under "
                                         f"output_dir), got {len(text)}: {_shortened(text)!r}")
    if not RUN_NAME.match(text):
        raise argparse.ArgumentTypeError(f"one directory name under output_dir: letters, digits, '_', '.', '-', "
                                         f"starting with a letter or digit (no '/', no '..'), got "
                                         f"{_shortened(text)!r}")
    return text


def port_number(text: str) -> int:
    """`ui --port`: a TCP port, 1-65535 (0 would pick a random port nobody is told; larger ones wrap around)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port number 1-65535, got {_shortened(text)!r}")
    return value


def _shortened(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clreg-sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="on an error or Ctrl-C, raise with the full traceback instead of a one-line message")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray, Ray Train and DeepSpeed messages on the console too (default: warnings only)")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp, required: bool = False):
        sp.add_argument("config", nargs=None if required else "?", help="YAML config (embedded defaults if omitted)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set clreg.tau=0.3 (repeatable)")

    sp = sub.add_parser("run", help="run one unlearning trial")
    with_config(sp)
    sp.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    sp.add_argument("--name", type=run_name, help="run name: one directory under output_dir (letters, digits, "
                                                  f"'_', '.', '-'; at most {MAX_RUN_NAME_CHARS} characters)")
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

    sp = sub.add_parser("resume", help="continue an interrupted sweep where its folder is now (its study, Tune "
                                       "state and sweep_state.json are checked before anything starts)")
    sp.add_argument("sweep_dir", help="the sweep's folder (storage.dir/<sweep name>; it may have been moved, not "
                                      "renamed)")
    sp.add_argument("--address")
    sp.set_defaults(func=cmd_resume)

    sp = sub.add_parser("report", help="tables and plots of a sweep's results in SWEEP_DIR/report/ "
                                       "(report.md + PNGs), also logged to the MLflow parent run")
    sp.add_argument("sweep_dir")
    sp.add_argument("--html", action="store_true",
                    help="also write report.html: one self-contained page, plots embedded")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("export", help="copy the models of a sweep's Pareto front (with search.candidates: epochs, "
                                       "its (trial, epoch) points) to plain Hugging Face folders, with front.json")
    sp.add_argument("sweep_dir")
    sp.add_argument("--front", action="store_true", required=True,
                    help="export the current Pareto front (required: the one selection export offers)")
    sp.add_argument("--out", help="folder to create (default: SWEEP_DIR/export/front); must be new or empty")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("ui", help="the MLflow dashboard on a sweep's results: starts `mlflow server` on its "
                                   "store and prints the links to its experiment, parent run and Pareto front")
    sp.add_argument("sweep_dir", nargs="?", help="sweep directory (default: the MLflow store of this directory)")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine "
                                                        "only)")
    sp.add_argument("--port", type=port_number, default=5000, help="port to listen on, 1-65535 (default: 5000)")
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
    sp.add_argument("--out", help="directory for eval_aggregates.json and eval_per_item.json (created if missing; "
                                  "files of those names in it are replaced)")
    sp.add_argument("--format", choices=("clreg", "open-unlearning"), default="clreg",
                    help="clreg: those two files; open-unlearning: also TOFU_EVAL.json / MUSE_EVAL.json in "
                         "open-unlearning's layout (needs --out; an existing one there is replaced)")
    sp.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse refused an argument (2, its message printed) or printed --help (0)
        return e.code if isinstance(e.code, int) else EXIT_INVALID
    from orchestrator.console_log import configure_logging

    configure_logging(verbose=args.verbose)
    from orchestrator.config_files import ConfigError
    from orchestrator.tracking import TrackingError, redact

    try:
        return args.func(args)
    except (ConfigError, ValueError, TrackingError) as e:
        if args.debug:
            raise
        console.print(f"[red]error:[/red] {escape(redact(str(e)))}")
        return EXIT_INVALID
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        kept = str(e) if isinstance(e, Interrupted) else f"{args.command} stopped"
        console.print(f"interrupted: {escape(redact(kept))}", soft_wrap=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        if args.debug:
            raise
        console.print(f"[red]error:[/red] {escape(redact(f'{type(e).__name__}: {_message_line(e)}'))}; "
                      f"{_failure_log(e, argv)}", soft_wrap=True)
        return EXIT_FAILED


def _message_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:MESSAGE_LINE_CHARS] if text else "(no message)"


def _failure_log(error: BaseException, argv: list[str] | None) -> str:
    """Write the traceback of an internal failure to `<tmp>/clreg-sweep/<time>-<pid>.log`; returns the console's
    words for it ("full log: PATH"), or why there is none (the console still gets its one line)."""
    from orchestrator.tracking import redact

    folder = Path(tempfile.gettempdir()) / "clreg-sweep"
    log = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    command = " ".join(sys.argv[:1] + (argv if argv is not None else sys.argv[1:]))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log.write_text(redact(f"{command}\n\n{''.join(traceback.format_exception(error))}"), encoding="utf-8")
    except OSError as e:
        return f"no log ({log}: {e.strerror}); run with --debug for the traceback"
    return f"full log: {log}"


if __name__ == "__main__":
    sys.exit(main())
