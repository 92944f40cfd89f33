"""Attacks that tell erasure from suppression (README "Attacks"): relearning on half of the forget set and weight
quantization, the forget metrics measured again, and the scores comparing the change with the oracle's."""

from trainables.attacks.protocol import read_attack, run_attacks, score_against_reference, write_attack
from trainables.attacks.quantize import quantize_model_, quantize_rtn
from trainables.attacks.relearn import relearn, relearn_rows
from trainables.attacks.scores import quantization_stability, recovery, relearn_agreement, robustness
from trainables.attacks.split import attack_split

__all__ = ["attack_split", "quantization_stability", "quantize_model_", "quantize_rtn", "read_attack", "recovery",
           "relearn", "relearn_agreement", "relearn_rows", "robustness", "run_attacks", "score_against_reference",
           "write_attack"]
