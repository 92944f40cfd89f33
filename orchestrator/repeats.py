"""Repeated seeds inside one trial: a sampled point is scored as the mean over its seeds, with the spread beside it.

The sampler should learn from a point's expected quality, not from one lucky seed, so a trial of a sampled space
with `seeds` runs the point once per seed and reports the means. Each finished seed is kept on disk, so a trial
that Tune restarts (a lost node, a killed driver) re-runs only the seeds that had not finished.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

from trainables.atomic_files import write_json_atomic
from trainables.report_keys import TRIAL_COMPLETE

SEED_RESULT_FILE = "seed_result.json"


def mean_over_seeds(results: list[dict]) -> dict[str, float]:
    """Mean of every metric all `results` report as a finite number, and `<metric>_std` (sample std) beside it.

    A metric missing or non-finite in any seed is left out rather than averaged over fewer seeds, so a mean always
    covers every seed. With one result the std is 0.
    """
    if not results:
        raise ValueError("mean_over_seeds needs at least one result")
    keys = [k for k in results[0] if k != TRIAL_COMPLETE and all(_finite(r.get(k)) for r in results)]
    out: dict[str, float] = {}
    for k in keys:
        values = [float(r[k]) for r in results]
        out[k] = statistics.fmean(values)
        out[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def run_seeds(seeds: list[int], out: Path, fit: Callable[[int, Path, bool], dict],
              report: Callable[[dict], None]) -> dict[str, float]:
    """Run `fit(seed, run_dir, forward_reports=False)` for each seed not yet finished and report the means.

    Reports `seed<s>/<metric>` after each seed (progress, and the per-seed values in MLflow), then the means with
    `trial_complete` and `num_seeds`. A seed whose run did not finish raises, so the trial fails instead of
    averaging fewer seeds.
    """
    results = []
    for done, seed in enumerate(seeds, start=1):
        run_dir = out / f"seed-{seed}"
        saved = run_dir / SEED_RESULT_FILE
        if saved.is_file():
            metrics = json.loads(saved.read_text())
        else:
            metrics = {k: v for k, v in fit(seed, run_dir, False).items() if _finite(v)}
            if not metrics.get(TRIAL_COMPLETE):
                raise RuntimeError(f"seed {seed} ended without its final evaluation (metrics: {sorted(metrics)})")
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(saved, metrics)
        results.append(metrics)
        report({**{f"seed{seed}/{k}": v for k, v in metrics.items() if k != TRIAL_COMPLETE}, "seeds_done": done})
    final = {**mean_over_seeds(results), "num_seeds": len(seeds), TRIAL_COMPLETE: 1}
    report(final)
    return final


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
