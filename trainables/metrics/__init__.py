"""Evaluation of unlearning: TOFU / MUSE metrics, membership inference, representation entanglement.

`evaluate` runs the registered `METRICS` on a model and benchmark; the pure metric math (`tofu`, `mia`,
`representation`) takes numbers and can be used on its own.
"""

from trainables.metrics.definitions import DEFINITIONS_VERSION
from trainables.metrics.evaluate import EvalResult, evaluate, oracle_reference, save_eval
from trainables.metrics.mia import privleak
from trainables.metrics.registry import METRICS, REPORTED, OracleReference
from trainables.metrics.representation import entanglement, probe_recoverability
from trainables.metrics.tofu import forget_quality, model_utility

__all__ = [
    "DEFINITIONS_VERSION",
    "METRICS",
    "REPORTED",
    "EvalResult",
    "OracleReference",
    "entanglement",
    "evaluate",
    "forget_quality",
    "model_utility",
    "oracle_reference",
    "privleak",
    "probe_recoverability",
    "save_eval",
]
