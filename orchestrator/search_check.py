"""Checks of what a sweep's objectives, constraints and early stopping read, before anything starts.

Each is a plain function over the sweep file and its space raising ValueError with the field, the setting that
keeps a metric from being measured and what is allowed; `sweep.validate_sweep` turns them into refusals.
"""

from __future__ import annotations

from orchestrator.preflight import check_attack_objective
from orchestrator.sweep_config import SweepConfig
from search_spaces.space import SearchSpace
from trainables.config import TrialConfig
from trainables.metrics.oracle_logs import NEEDS as ORACLE_LOG_NEEDS
from trainables.metrics.oracle_logs import OracleLog


def check_metrics(cfg: SweepConfig, oracle_log: OracleLog | None) -> None:
    """Every objective and `search.constraints` metric can be measured by the sweep's trials, and a relative
    constraint has a reference point to be relative to (`oracle_log`: `prepare.oracle_logs` as read)."""
    from trainables.metrics import REPORTED  # imports every metric suite, which registers its metrics

    for i, obj in enumerate(cfg.objectives):
        check_trial_metric(f"objectives[{i}].metric", obj.metric, cfg.base, oracle_log)
    for i, bound in enumerate(cfg.search.constraints):
        check_trial_metric(f"search.constraints[{i}].metric", bound.metric, cfg.base, oracle_log)
        if bound.of is not None and REPORTED.get(bound.metric).kind == "attack":
            raise ValueError(f"search.constraints[{i}]: {bound.metric} is measured by an attack, which the "
                             f"{bound.of} point is not scored with; give absolute bounds (drop `of`)")
        if bound.of == "oracle" and not has_oracle(cfg.base):
            raise ValueError(f"search.constraints[{i}]: of oracle needs an oracle model: set base.prepare.enabled, "
                             "base.prepare.oracle_path or base.prepare.oracle_logs, or give absolute bounds")


def check_early_stopping(cfg: SweepConfig, space: SearchSpace) -> None:
    """`search.early_stopping` needs the objectives at every epoch, of one seed, and an epoch to stop at."""
    from trainables.metrics import REPORTED

    stopping = cfg.search.early_stopping
    if not stopping.enabled:
        return
    if cfg.base.eval.every != 1:
        raise ValueError("search.early_stopping needs base.eval.every=1 so that every epoch reports the objectives")
    if len(space.repeat_seeds) > 1:
        raise ValueError(f"search.early_stopping cannot stop a trial that averages {len(space.repeat_seeds)} seeds "
                         f"(seeds {space.repeat_seeds}): set search.early_stopping.enabled=false or "
                         "search.trial_seeds to one seed")
    attack_objectives = [m for m, _ in cfg.objective_modes if REPORTED.get(m).kind == "attack"]
    if attack_objectives:
        raise ValueError(f"search.early_stopping compares the objectives at every epoch, and {attack_objectives[0]} "
                         "is measured once, after training: drop the attack objective or early stopping")
    if stopping.grace_epochs >= cfg.base.train.epochs:
        raise ValueError(f"search.early_stopping.grace_epochs {stopping.grace_epochs} leaves no epoch to stop at: "
                         f"allowed 1 .. {cfg.base.train.epochs - 1} (base.train.epochs - 1)")


def check_candidates(cfg: SweepConfig, space: SearchSpace) -> None:
    """`search.candidates: epochs` needs the objectives at several epochs of one seed, measured without an attack,
    and `trial_value: first_at_oracle` a metric the oracle is scored on."""
    from trainables.metrics import REPORTED

    search, base = cfg.search, cfg.base
    if search.candidates != "epochs":
        return
    every, epochs = base.eval.every, base.train.epochs
    if not 1 <= every < epochs:
        raise ValueError(f"search.candidates: epochs needs base.eval.every between 1 and {epochs - 1} "
                         f"(base.train.epochs - 1) so that a trial evaluates more than its final model; got {every}")
    if len(space.repeat_seeds) > 1:
        raise ValueError(f"search.candidates: epochs takes each epoch of one seed, and the space averages "
                         f"{len(space.repeat_seeds)} seeds (seeds {space.repeat_seeds}): set search.trial_seeds to "
                         "one seed or search.candidates: final")
    attacked = [m for m in [*(o.metric for o in cfg.objectives), *(c.metric for c in search.constraints)]
                if REPORTED.get(m).kind == "attack"]
    if attacked:
        raise ValueError(f"search.candidates: epochs compares every evaluated epoch, and {attacked[0]} is measured "
                         "once, after training: drop that objective or constraint, or set search.candidates: final")
    if base.attack.when == "front":
        raise ValueError("base.attack.when: front attacks the front's final models, and with search.candidates: "
                         "epochs the front holds earlier epochs too: set base.attack.when: final or never")
    if search.trial_value == "first_at_oracle":
        metric = search.selection_metric
        check_trial_metric("search.selection_metric", metric, base, None)
        if REPORTED.get(metric).kind == "attack":
            raise ValueError(f"search.selection_metric {metric} is measured by an attack, after training; allowed: a "
                             "memorisation metric every evaluation reports, e.g. forget_rouge")
        if not has_oracle(base):
            raise ValueError("search.trial_value: first_at_oracle compares with the oracle: set base.prepare.enabled, "
                             "base.prepare.oracle_path or base.prepare.oracle_logs")


def check_trial_metric(field: str, metric: str, base: TrialConfig, oracle_log: OracleLog | None) -> None:
    """A metric an objective or a constraint reads: some metric suite reports it, and the trial can measure it
    (an attack metric needs its attack before the trial ends; an oracle-relative one needs the oracle, or an
    open-unlearning log that holds what it reads, since such a log replaces any trained oracle's reference).

    Raises:
        ValueError naming `field`, the setting that keeps the metric from being measured and the allowed values.
    """
    from trainables.metrics import REPORTED  # imports every metric suite, which registers its metrics

    if metric not in REPORTED:
        raise ValueError(f"{field} {metric!r} is reported by no metric; allowed: {', '.join(REPORTED.names())}")
    if REPORTED.get(metric).kind == "attack":
        check_attack_objective(field, metric, base)
        return
    prep = base.prepare
    needs_oracle = REPORTED.get(metric).needs_oracle
    if needs_oracle and oracle_log is None and not has_oracle(base):
        raise ValueError(f"{field} {metric} needs the oracle model: set prepare.enabled, prepare.oracle_path or "
                         f"prepare.oracle_logs")
    if needs_oracle and oracle_log is not None and not oracle_log.supplies(metric):
        raise ValueError(f"{field} {metric} needs {ORACLE_LOG_NEEDS[metric]} from the oracle, and "
                         f"prepare.oracle_logs {prep.oracle_logs} has none; allowed: a retain model's log that has "
                         f"it, or prepare.enabled / prepare.oracle_path without the log")


def has_oracle(base: TrialConfig) -> bool:
    """Whether the sweep has an oracle to score against: trained by `prepare`, given as a folder, or a log."""
    prep = base.prepare
    return bool(prep.enabled or prep.oracle_path or prep.oracle_logs)
