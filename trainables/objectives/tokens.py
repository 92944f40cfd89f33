"""Answer-token selection and negative log-likelihoods, shared by all objectives.

Only answer positions are scored (labels -100 mark prompt and padding). Logits are shifted the HF way: the logit at
position `t` predicts label `t + 1`. Log-softmax runs in fp32 on the answer positions alone, so bf16 logits lose no
precision and the fp32 copy is `[N, V]` (N answer tokens) rather than `[B, L, V]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.data.formatting import IGNORE_INDEX


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """Which shifted positions predict an answer token.

    Args:
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        `[B, L - 1]` bool; entry `(i, t)` is True when `logits[i, t]` predicts the answer token `labels[i, t + 1]`.
    """
    return labels[:, 1:] != IGNORE_INDEX


def answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp32 logits at the positions that predict answer tokens, and those tokens.

    Args:
        logits: `[B, L, V]`.
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        `(z, y)`: `z` `[N, V]` fp32 and `y` `[N]` token ids, N = number of answer tokens in the batch, in row-major
        (sequence, position) order.
    """
    mask = answer_mask(labels)
    return logits[:, :-1][mask].float(), labels[:, 1:][mask]


def answer_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The NLL of every answer token, for objectives that weight tokens one by one (WGA, SatImp).

    Args:
        logits: `[B, L, V]`.
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        `[N]` fp32 `-log p(y_t | y_<t)`, in the order of `answer_logits`.
    """
    z, y = answer_logits(logits, labels)
    return F.cross_entropy(z, y, reduction="none")


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer-token NLL of each sequence, and its number of answer tokens.

    `S_i = -sum_t log p(y_{i,t+1} | y_{i,<=t})` over the answer positions of sequence i.

    Args:
        logits: `[B, L, V]`.
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        `(S, n)`: `S` `[B]` fp32 summed NLL, `n` `[B]` fp32 answer-token counts `|y_i|` (float so that `S / n` is
        the per-token average without a cast).
    """
    mask = answer_mask(labels)
    token_nll = answer_token_nll(logits, labels)
    row = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(mask)[mask]
    summed = torch.zeros(labels.shape[0], dtype=token_nll.dtype, device=token_nll.device).index_add(0, row, token_nll)
    return summed, mask.sum(dim=1).to(token_nll.dtype)


def batch_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token NLL over all answer tokens of the batch, `NLL(B) = sum_i S_i / sum_i |y_i|`.

    Token-weighted (as HF's `model(..., labels=...).loss`), not a mean of per-sequence means.

    Args:
        logits: `[B, L, V]`.
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        Scalar fp32; 0 for a batch without answer tokens (which `collate` never builds).
    """
    z, y = answer_logits(logits, labels)
    if y.numel() == 0:
        return z.sum() * 0.0
    return F.cross_entropy(z, y)
