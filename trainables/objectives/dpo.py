"""DPO on the forget set (Rafailov et al., 2023, https://arxiv.org/abs/2305.18290), as unlearning prefers a refusal:
IdkDPO (Maini et al., 2024, TOFU, https://arxiv.org/abs/2401.06121).

Definition and defaults as in open-unlearning (`configs/trainer/DPO.yaml`, `src/trainer/unlearn/dpo.py`,
`compute_dpo_loss` in `src/trainer/utils.py`): the winning answer is the alternative ("I don't know", see
`trainables.data.idk`), the losing one the forget answer; sequence log-likelihoods are summed over answer tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from trainables.objectives.npo import log_ratio
from trainables.objectives.outputs import SequenceOutputs, required


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = -(2/beta) * mean_i log sigma(beta * (w_i - l_i))`, `w_i`, `l_i` the log ratios of the alternative
    (winning) and forget (losing) answer of row i.

    Raising the refusal's likelihood relative to the reference while lowering the forget answer's trains the model
    to decline instead of diverging into noise, as gradient ascent does; without the winning side (w = 0) it is
    NPO's loss.

    Args:
        forget: forget-batch outputs with `ref_logits`, and `alternate` (the same prompts with the preferred
            answers) with its own `ref_logits`.
        params: `beta` (> 0).

    Raises:
        ValueError: when the alternate outputs or a reference's logits are missing.
    """
    alternate = required(forget.alternate, "the forget prompts with the preferred answers (alternate)", "dpo")
    margin = log_ratio(alternate, "dpo's preferred answers") - log_ratio(forget, "dpo")
    beta = params["beta"]
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()
