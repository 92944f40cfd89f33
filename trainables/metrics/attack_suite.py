"""The names an attack reports (`trainables.attacks`), registered in `REPORTED` so a sweep can optimise them.

An attack re-measures the evaluation metrics of `ATTACK_METRICS` after relearning (on the held-out half B) and after
quantization, so each keeps its metric's direction; the scores computed from them are all best high except the
recovery, which is best at 0 (nothing came back).
"""

from __future__ import annotations

from trainables.config import ATTACK_METRICS, BIT_WIDTHS
from trainables.metrics import tofu_suite  # noqa: F401  (registers the forget metrics whose directions are read)
from trainables.metrics.registry import REPORTED, MetricInfo
from trainables.report_keys import (
    ATTACK_TIMINGS,
    QUANT_Q,
    RELEARN_R,
    RELEARN_RECOVERY,
    ROBUSTNESS,
    quant_metric,
    relearn_metric,
)

for _metric in ATTACK_METRICS:
    _direction = REPORTED.get(_metric).direction
    for _name in (relearn_metric(_metric), relearn_metric(_metric, before=True),
                  *(quant_metric(bits, _metric) for bits in BIT_WIDTHS)):
        REPORTED.register(_name)(MetricInfo("attack", _direction))
for _name in (RELEARN_R, QUANT_Q, ROBUSTNESS):
    REPORTED.register(_name)(MetricInfo("attack", "max", needs_oracle=_name != QUANT_Q))
REPORTED.register(RELEARN_RECOVERY)(MetricInfo("attack", "min", needs_oracle=True))
for _name in ATTACK_TIMINGS:
    REPORTED.register(_name)(MetricInfo("timing", "min"))
