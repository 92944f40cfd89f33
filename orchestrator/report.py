"""`clreg-sweep report SWEEP_DIR`: the sweep's results as tables, read back from MLflow.

The child runs are the source of truth (they survive resumes and hold every trial's params and final metrics);
this module only reads them and computes summaries with the same Pareto functions the driver uses.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from orchestrator.pareto import hypervolume, pareto_front
from orchestrator.sweep import load_sweep_dir, resolve_space, sweep_paths
from orchestrator.tracking import default_reference
from search_spaces.space import is_grid

REPORT_FILE = "report.md"


@dataclass
class TrialRow:
    """One finished trial: its id, parameters (as logged) and final metrics."""

    trial_id: str
    params: dict[str, str]
    metrics: dict[str, float]


def finished_trials(tracking_uri: str, parent_run_id: str) -> list[TrialRow]:
    """Every FINISHED child run of the sweep's parent run, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    return [TrialRow(r.data.tags.get("clreg.trial_id", r.info.run_name), dict(r.data.params), dict(r.data.metrics))
            for r in runs]


def sweep_report(sweep_dir: str | Path) -> str:
    """The Markdown report of the sweep in `sweep_dir`; also written to `sweep_dir/report.md`."""
    cfg = load_sweep_dir(sweep_dir)
    state = json.loads((sweep_paths(cfg).state_file).read_text())
    rows = finished_trials(state["tracking_uri"], state["parent_run_id"])
    objectives = cfg.objective_modes
    names = [m for m, _ in objectives]
    maximize = tuple(mode == "max" for _, mode in objectives)
    # As on the MLflow parent run: only trials that report every objective take part in the front.
    scored = [r for r in rows if all(_finite(r.metrics.get(m)) for m in names)]
    points = [[r.metrics[m] for m in names] for r in scored]
    front_idx = pareto_front(points, maximize=maximize)
    front = {scored[i].trial_id for i in front_idx}
    reference = default_reference(points, maximize)
    hv = hypervolume([points[i] for i in front_idx], reference, maximize=maximize) if front_idx else 0.0
    searched = list(resolve_space(cfg).params)

    lines = [f"# Sweep `{cfg.name}`", "",
             f"{len(rows)} finished trials; objectives: {', '.join(f'{m} ({mode})' for m, mode in objectives)}; "
             f"Pareto front: {len(front)} trials; hypervolume {hv:.4g} (reference {reference}).", ""]
    lines += ["## Trials (* = on the Pareto front)", ""]
    lines += _table(["", "trial", *names, *searched],
                    [["*" if r.trial_id in front else "", r.trial_id, *(_with_spread(r.metrics, m) for m in names),
                      *(_param(r.params.get(p, "")) for p in searched)] for r in rows])
    lines += ["", "## Best trial per objective", ""]
    best_rows = []
    for m, mode in objectives:
        scored = [r for r in rows if _finite(r.metrics.get(m))]
        if scored:
            best = (max if mode == "max" else min)(scored, key=lambda r: r.metrics[m])
            best_rows.append([m, best.trial_id, _num(best.metrics[m]),
                              ", ".join(f"{p}={_param(best.params.get(p, ''))}" for p in searched)])
    lines += _table(["objective", "trial", "value", "params"], best_rows)
    grid_params = [p for p, spec in resolve_space(cfg).params.items() if is_grid(spec) and p != "train.seed"]
    if grid_params:
        lines += ["", f"## Ablation over {', '.join(grid_params)} (mean ± std over seeds)", ""]
        lines += _table([*grid_params, "n", *names], _ablation(rows, grid_params, names))
    text = "\n".join(lines) + "\n"
    (Path(sweep_dir) / REPORT_FILE).write_text(text)
    return text


def _ablation(rows: list[TrialRow], keys: list[str], metrics: list[str]) -> list[list[str]]:
    groups: dict[tuple[str, ...], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(tuple(r.params.get(k, "") for k in keys), []).append(r)
    out = []
    for key, members in sorted(groups.items()):
        cells = []
        for m in metrics:
            vals = [r.metrics[m] for r in members if _finite(r.metrics.get(m))]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.fmean(vals):.4g} ± {sd:.2g}" if vals else "-")
        out.append([*key, str(len(members)), *cells])
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                          for r in rows]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _param(text: str) -> str:
    """A logged parameter (MLflow keeps strings), numbers shortened to 4 significant digits."""
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _with_spread(metrics: dict[str, float], name: str) -> str:
    """A trial's metric, as `mean ± std` when the trial averaged several seeds (it then logged `<name>_std`)."""
    std = metrics.get(f"{name}_std")
    return _num(metrics.get(name)) + (f" ± {std:.2g}" if _finite(std) and metrics.get("num_seeds", 1) > 1 else "")


def _num(v) -> str:
    return f"{v:.4g}" if _finite(v) else "-"
