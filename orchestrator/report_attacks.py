"""The report's attack section: each attacked trial's figures and the before-vs-after relearning plot.

A trial is attacked with `attack.when: final` (every trial) or `front` (the front's, after the sweep); the section
reads the figures the trials' MLflow runs hold, so it shows whatever was attacked, and says so when nothing was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.report_document import Block, Heading, Paragraph, Table, number_cell
from orchestrator.report_plots import RelearnPoint
from trainables.config import AttackConfig
from trainables.report_keys import QUANT_Q, RELEARN_R, RELEARN_RECOVERY, ROBUSTNESS, quant_metric, relearn_metric


def attack_table(rows: Sequence, labels: dict[str, str], attack: AttackConfig) -> list[Block]:
    """A table of every trial that has attack figures (`rows`: the report's `TrialRow`s), or why there is none."""
    m, bits = attack.metric, min(attack.quantize.bits)
    columns = [(f"{m} on B", relearn_metric(m, before=True)), ("after relearning", relearn_metric(m)),
               ("recovery", RELEARN_RECOVERY), ("R", RELEARN_R), (f"{m} at {bits} bits", quant_metric(bits, m)),
               ("Q", QUANT_Q), ("robustness", ROBUSTNESS)]
    attacked = [r for r in rows if any(_measured(r.metrics.get(key)) for _, key in columns)]
    blocks: list[Block] = [Heading("Attacks")]
    if not attacked:
        why = ("`attack.when` is never" if not attack.active else
               "no finished trial has attack figures yet (a front attack runs after the sweep's last trial)")
        return [*blocks, Paragraph(f"No attack figures: {why}.")]
    blocks.append(Paragraph(
        f"`attack.when: {attack.when}`. Relearning: fine-tuning on half A of the forget set, `{m}` measured on the "
        f"held-out half B; quantization: round-to-nearest at {sorted(attack.quantize.bits)} bits on the whole "
        "forget set. recovery: the share of the target's lead over the oracle on B that relearning brings back; "
        "R, Q, robustness: 1 = behaves like the oracle / unchanged (README, Attacks)."))
    table = [[labels.get(r.trial_id, r.trial_id), "on" if r.record.clreg_active else "off",
              *(number_cell(r.metrics.get(key)) for _, key in columns)] for r in attacked]
    return [*blocks, Table(["trial", "CLReg", *(name for name, _ in columns)], table)]


def relearn_points(rows: Sequence, labels: dict[str, str], metric: str) -> list[RelearnPoint]:
    """The trials with both figures of the relearning attack on `metric`."""
    before, after = relearn_metric(metric, before=True), relearn_metric(metric)
    return [RelearnPoint(labels.get(r.trial_id, r.trial_id), r.record.clreg_active, r.metrics[before],
                         r.metrics[after])
            for r in rows if _measured(r.metrics.get(before)) and _measured(r.metrics.get(after))]


def _measured(value: object) -> bool:
    """Whether a run holds a finite number for a figure (MLflow has no missing values: absent keys stay absent)."""
    return isinstance(value, (int, float)) and math.isfinite(value)
