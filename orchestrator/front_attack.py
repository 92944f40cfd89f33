"""`attack.when: front`: the attacks on the Pareto front's trials only, after the sweep (README "Attacks").

The cheap mode for a large sweep: a trial off the front is never attacked. Each front trial's final models (one
per seed) are attacked by one Ray Train run of the `attack` recipe, scored against the sweep's attack reference,
and the figures are logged to the trial's MLflow run and written to `trials/<id>/attack.json`; a trial that
already has that file is not attacked again (a resumed sweep, a second `resume` of a finished one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import tracking
from orchestrator.attack_reference import attack_models, attack_reference
from orchestrator.prepare import Prepared
from orchestrator.repeats import final_result
from orchestrator.trial_record import read_record
from trainables.attacks.protocol import read_attack, read_reference, score_against_reference, write_attack
from trainables.config import TrialConfig
from trainables.report_keys import TRIAL_COMPLETE, seed_dir


def attack_front(base: TrialConfig, front: list[dict[str, Any]], runs: tracking.SweepRuns, trials_dir: Path,
                 prepared: Prepared, log: Callable[[str], Any] = print) -> int:
    """Attack every trial of `front` (rows of `ParetoSummary.front`) not attacked yet; returns how many were."""
    todo = [row for row in front if read_attack(trials_dir / row["trial_id"]) is None]
    if not todo:
        log(f"attack: every front trial ({len(front)}) is attacked already")
        return 0
    path, why = attack_reference(base, prepared, log)
    reference = read_reference(path) if path else None
    if why:
        log(f"attack: no oracle reference ({why}): relearn/R, relearn/recovery and relearn/robustness stay missing")
    for n, row in enumerate(todo, 1):
        trial_id, started = row["trial_id"], time.perf_counter()
        trial_dir = trials_dir / trial_id
        record = read_record(trial_dir)
        if record is None:
            log(f"attack: front trial {trial_id} skipped: {trial_dir} has no trial record (outputs moved?)")
            continue
        cfg = TrialConfig.model_validate(record.config)
        models = {f"seed-{s}": str(seed_dir(trial_dir, s) / "final_model") for s in record.seeds}
        log(f"attack: front trial {n}/{len(todo)} ({row.get('label', trial_id)}), {len(models)} model(s) ...")
        figures = attack_models(cfg, models, trial_dir / "front-attack", f"front-attack-{trial_id}")
        scored = [{**f, **score_against_reference(f, reference, cfg.attack.metric)[0]} for f in figures.values()]
        metrics = {k: v for k, v in final_result(record.seeds, scored, {}).items()
                   if k not in (TRIAL_COMPLETE, "num_seeds")}
        tracking.log_metrics(runs, row["run_id"], metrics)
        write_attack(metrics, trial_dir, rank=0)
        log(f"attack: front trial {trial_id} done in {time.perf_counter() - started:.0f} s")
    return len(todo)
