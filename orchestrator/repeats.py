"""A trial's final result, read from its seeds' outcome files: one channel for a trial of one seed or of several.

Every trial trains its seeds (one, or a sampled space's `repeat_seeds`) in one Ray Train run, each seed into
`trials/<id>/seed-<s>/`, where rank 0 writes the seed's outcome file last. The driver reads those files and tells
Tune the trial's result once: the seed's own metrics for one seed; for several, each seed's metrics under
`seed<s>/` and their means with the spread beside them, since the sampler should learn from a point's expected
quality, not from one lucky seed. Each finished seed is kept on disk, so a trial that Tune restarts (a lost node,
a killed driver) re-runs only the seeds that had not finished.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from trainables.report_keys import OUTCOME_FILE, TRIAL_COMPLETE, finished_outcome, seed_dir, seed_key


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


def run_seeds(seeds: Sequence[int], out: Path, fit: Callable[[list[int]], dict]) -> dict[str, float]:
    """Train the seeds not yet finished with one `fit(pending_seeds)` (one Ray Train run, each seed into
    `out/seed-<s>/`), then return the trial's final result (`final_result`).

    Raises:
        RuntimeError: a seed's run did not finish, so the trial fails instead of averaging fewer seeds. Whatever
            `fit` raises (`NonFiniteLossError` for a diverged seed) passes through.
    """
    pending = [s for s in seeds if _seed_result(seed_dir(out, s)) is None]
    run = {k: v for k, v in fit(pending).items() if _finite(v)} if pending else {}
    results = []
    for seed in seeds:
        metrics = _seed_result(seed_dir(out, seed))
        if metrics is None:
            raise RuntimeError(f"seed {seed} ended without its final evaluation ({seed_dir(out, seed)} has no "
                               f"complete {OUTCOME_FILE})")
        results.append(metrics)
    return final_result(seeds, results, run)


def final_result(seeds: Sequence[int], results: list[dict], run: dict) -> dict[str, float]:
    """What a trial reports to Tune when it ends, from each seed's final metrics and the run's own figures.

    One seed: its metrics. Several: `seed<s>/<metric>` per seed (the per-seed values in MLflow), the means with
    `<metric>_std`, `num_seeds`, and the last seed's text fields (`node_id`: where the run ended). Both carry
    `trial_complete` and the run's own costs (`run_seconds`, `setup/import_seconds`, ...: paid once per run, so
    neither averaged nor repeated per seed).
    """
    costs = {k: v for k, v in run.items() if k.endswith("_seconds") and k not in results[0]}
    if len(results) == 1:
        return {**results[0], **costs, TRIAL_COMPLETE: 1}
    per_seed = {seed_key(seed, k): v for seed, metrics in zip(seeds, results) for k, v in metrics.items()
                if _finite(v) and k != TRIAL_COMPLETE}
    texts = {k: v for k, v in results[-1].items() if isinstance(v, str)}
    return {**per_seed, **mean_over_seeds(results), **texts, **costs, "num_seeds": len(seeds), TRIAL_COMPLETE: 1}


def _seed_result(run_dir: Path) -> dict | None:
    """A finished seed's final metrics (finite numbers) and text fields (`node_id`), read from the outcome file its
    worker wrote last."""
    outcome = finished_outcome(run_dir)
    return None if outcome is None else {k: v for k, v in outcome.items() if _finite(v) or isinstance(v, str)}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
