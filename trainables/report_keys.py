"""Keys of a run's final report that the orchestrator acts on, and where the report is written (shared by the
workers, which write it, and the sweep driver, which reads it)."""

from __future__ import annotations

import json
from pathlib import Path

# In the final report only: the run trained every epoch and evaluated the result. A trial stopped early by the
# scheduler never sends it, so its half-trained metrics are never told to Optuna as COMPLETE.
TRIAL_COMPLETE = "trial_complete"
# In the report a run ends with when its loss became NaN or inf, beside "divergence" (the reason, a string).
DIVERGED = "diverged"
DIVERGENCE_REASON = "divergence"
# What a warm slot's worker returns for a run: it ended (finished or diverged: the outcome file says which), or the
# slot pool cancelled it.
RUN_FINISHED = "finished"
RUN_CANCELLED = "cancelled"
# Rank 0 writes a run's last report (final metrics, or the divergence) to this file in the run's output directory:
# Ray Train's `Result.metrics` holds the newest *checkpointed* report only, which is the last epoch's.
OUTCOME_FILE = "run_outcome.json"
# The trial's resolved configuration, written by the trial driver next to its outputs (and logged to its MLflow
# run): what `report` and `studies/` read instead of rebuilding the config from MLflow's parameter strings.
TRIAL_RECORD_FILE = "trial.json"
# "1" when the command that started a run asked for every library's info logs (`--verbose`): set by the driver
# (`orchestrator.console_log`), inherited by a local cluster's workers, passed to a joined cluster's in its runtime
# environment.
VERBOSE_ENV = "CLREG_VERBOSE"


def seed_dir(output_dir: str | Path, seed: int) -> Path:
    """Where one seed of a repeated-seed run writes its model, evaluation and outcome."""
    return Path(output_dir) / f"seed-{seed}"


def epoch_model_dir(run_dir: str | Path, epoch: int) -> Path:
    """Where a run keeps its model as it was after `epoch` (`eval.keep_epoch_models`; the last epoch's model is the
    run's `final_model`)."""
    return Path(run_dir) / f"epoch-{epoch}"


def seed_key(seed: int, key: str) -> str:
    """`seed<s>/<key>`: a metric of one seed among several (per-epoch reports of a repeated-seed run, per-seed final
    metrics), so the seeds' values do not collide under one name."""
    return f"seed{seed}/{key}"


def finished_outcome(run_dir: Path) -> dict | None:
    """The final report in `run_dir/OUTCOME_FILE` (written atomically, last) when it says the run finished, else None
    (no file yet, a diverged run, an unreadable file)."""
    try:
        outcome = json.loads((run_dir / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return outcome if outcome.get(TRIAL_COMPLETE) else None


# The loss terms a training epoch reports (`LossTerms`' fields) and the name each is reported under: written here
# once, for the loop that reports them and the metric registry that lets a sweep optimise them.
LOSS_TERMS = ("loss", "forget", "retain", "clreg")
# Wall times a trial reports with its final metrics.
TIMINGS = ("train_seconds", "eval_seconds")


def loss_metric(term: str) -> str:
    """`train/loss` for the total, `train/<term>_loss` for a part (`train/clreg_loss`)."""
    return "train/loss" if term == "loss" else f"train/{term}_loss"


# What an attack reports (README "Attacks"), beside the trial's final metrics: the forget metrics after relearning
# (on the held-out half B) and after quantization (on the whole forget set), and the scores computed from them.
RELEARN_RECOVERY = "relearn/recovery"  # share of the target's lead over the oracle on B that relearning brings back
RELEARN_R = "relearn/R"  # agreement of the unlearned model's change under relearning with the oracle's
QUANT_Q = "quant/Q"  # stability of the attack metric under the lowest bit width
ROBUSTNESS = "relearn/robustness"  # harmonic mean of R and Q (of whichever of the two was measured)
ATTACK_SCORES = (RELEARN_RECOVERY, RELEARN_R, QUANT_Q, ROBUSTNESS)
ATTACK_TIMINGS = ("attack/relearn_seconds", "attack/quantize_seconds")
ATTACK_FILE = "attack.json"  # in a run's output directory: the attack's metrics, written by rank 0


def relearn_metric(metric: str, before: bool = False) -> str:
    """`relearn/<metric>`: on half B after relearning on half A; `relearn/<metric>_before`: on B before it."""
    return f"relearn/{metric}_before" if before else f"relearn/{metric}"


def quant_metric(bits: int, metric: str) -> str:
    """`quant<bits>/<metric>`: on the forget set after `bits`-bit quantization (`quant4/forget_prob`)."""
    return f"quant{bits}/{metric}"
