"""CE-U: cross-entropy unlearning towards the model's own distribution without the answer token (Yang, 2025,
"CE-U: Cross Entropy Unlearning", https://arxiv.org/abs/2503.01224).

Definition and default as in open-unlearning (`configs/trainer/CEU.yaml`, `src/trainer/unlearn/ceu.py`), which
already scores answer positions only, averaged over the scored tokens of the whole batch. Its footnote trick is
kept: the first `ignore_first_n_answer_tokens` labelled tokens of each sequence are not scored, counted on the
labels as open-unlearning counts them (a label at position 0, which no logit predicts, is one of them). CE-U has no
retain term there (its trainer reads the forget batch alone) and none here: like gradascent it takes only gamma,
the project's forget weight (1, open-unlearning's implicit one).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from trainables.data.formatting import IGNORE_INDEX
from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.tokens import answer_logits


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = mean_t CE(z_t, q_t)`, `q_t = softmax(z_t with z_t,y_t set to -inf)` held constant, over the scored
    answer positions t.

    The target is the model's own prediction with the answer token removed and the rest renormalised, so only the
    answer's probability is pushed down and the ranking of every other token is kept. Per token the loss is
    `H(q_t) - log(1 - p_t)`, its gradient in the logits `p_t - q_t`: bounded, and vanishing as the answer's
    probability goes to 0, unlike gradient ascent. Each answer's first tokens are left out as in the footnote of
    the paper's Training Settings section, which open-unlearning implements.

    Args:
        forget: forget-batch outputs (`logits` `[B, L, V]`, `labels` `[B, L]`); `ref_logits` unused.
        params: `ignore_first_n_answer_tokens` (a whole number >= 0).

    Returns:
        Scalar fp32; 0 for a batch with no answer token left to score.
    """
    labelled = forget.labels != IGNORE_INDEX
    skipped = labelled & (labelled.cumsum(dim=1) <= int(params["ignore_first_n_answer_tokens"]))
    z, y = answer_logits(forget.logits, forget.labels.masked_fill(skipped, IGNORE_INDEX))
    without_answer = z.detach().masked_fill(F.one_hot(y, num_classes=z.shape[-1]).bool(), float("-inf"))
    return F.cross_entropy(z, F.softmax(without_answer, dim=-1), reduction="sum") / max(y.numel(), 1)
