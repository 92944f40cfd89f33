"""Repeated seeds inside one trial: a sampled point is scored as the mean over its seeds, with the spread beside it.

The sampler should learn from a point's expected quality, not from one lucky seed, so a trial of a sampled space
with `seeds` runs the point once per seed and reports the means. All seeds train in one Ray Train run (its start
and end cost more than a tiny trial's training). Each finished seed is kept on disk, so a trial that Tune restarts
(a lost node, a killed driver) re-runs only the seeds that had not finished.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

from trainables.report_keys import OUTCOME_FILE, TRIAL_COMPLETE, finished_outcome, seed_dir


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


def run_seeds(seeds: list[int], out: Path, fit: Callable[[list[int]], dict],
              report: Callable[[dict], None]) -> dict[str, float]:
    """Train the seeds not yet finished with one `fit(pending_seeds)` (one Ray Train run, each seed into
    `out/seed-<s>/`), then report every seed's final metrics and their means.

    Reports `seed<s>/<metric>` for each seed (the per-seed values in MLflow), then the means with `trial_complete`,
    `num_seeds` and the run's own costs (`run_seconds`, ...). A seed whose run did not finish raises, so the trial
    fails instead of averaging fewer seeds.
    """
    pending = [s for s in seeds if _seed_result(seed_dir(out, s)) is None]
    run = {k: v for k, v in fit(pending).items() if _finite(v)} if pending else {}
    results = []
    for done, seed in enumerate(seeds, start=1):
        metrics = _seed_result(seed_dir(out, seed))
        if metrics is None:
            raise RuntimeError(f"seed {seed} ended without its final evaluation ({seed_dir(out, seed)} has no "
                               f"complete {OUTCOME_FILE})")
        results.append(metrics)
        report({**{f"seed{seed}/{k}": v for k, v in metrics.items() if k != TRIAL_COMPLETE}, "seeds_done": done})
    costs = {k: v for k, v in run.items() if k.endswith("_seconds") and k not in results[0]}
    final = {**mean_over_seeds(results), **costs, "num_seeds": len(seeds), TRIAL_COMPLETE: 1}
    report(final)
    return final


def _seed_result(run_dir: Path) -> dict | None:
    """A finished seed's final metrics (finite numbers only), read from the outcome file its worker wrote last."""
    outcome = finished_outcome(run_dir)
    return None if outcome is None else {k: v for k, v in outcome.items() if _finite(v)}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
