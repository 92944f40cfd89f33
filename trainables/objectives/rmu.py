"""RMU: representation misdirection for unlearning (Li et al., 2024, "The WMDP Benchmark", https://arxiv.org/abs/2403.03218).

Definition and defaults as in open-unlearning (`configs/trainer/RMU.yaml`, `src/trainer/unlearn/rmu.py`): the forget
term steers one layer's outputs on the forget answers toward a fixed random direction `c * u`; the default retain
term (`embed_diff`) keeps that layer's outputs on the retain answers where the frozen model has them. Both are
masked mean squared errors over answer positions (labels != -100). Where open-unlearning hooks the module
`model.layers.<l>`, the layer here follows `clreg.layer`'s convention (`trainables.model.layers`): the same for any
layer but the last, whose output is taken after the final norm. `u` is drawn from `direction_seed` with uniform
entries in [0, 1), as WMDP and open-unlearning draw it (`torch.rand`), then normalised.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from trainables.data.formatting import IGNORE_INDEX
from trainables.objectives.outputs import SequenceOutputs, required


def steering_target(dim: int, coeff: float, seed: int) -> torch.Tensor:
    """`c * u`: `u` a unit vector of `dim` uniform [0, 1) entries drawn from a generator seeded with `seed`.

    Drawn on the CPU in fp32, so every worker and device steers toward the same vector.
    """
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    return coeff * u / u.norm()


def activation_mse(hidden: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`mean_i (1 / |A_i|) * sum_{t in A_i} mean_d (h_{i,t,d} - target_{i,t,d})^2` over each row's answer positions A_i.

    Every sequence weighs the same whatever its answer length (open-unlearning's `compute_activation_loss`).

    Args:
        hidden: `[B, L, D]` layer outputs; computed in fp32.
        target: `[D]` (one direction for every token) or `[B, L, D]` (the frozen model's outputs, detached).
        labels: `[B, L]`, -100 outside answer tokens.

    Returns:
        Scalar fp32; a row without answer tokens adds 0.
    """
    mask = (labels != IGNORE_INDEX).float()
    per_token = (hidden.float() - target.detach().float().to(hidden.device)).pow(2).mean(dim=-1)  # [B, L]
    per_row = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_row.mean()


def forget_loss(forget: SequenceOutputs, params: Mapping[str, float]) -> torch.Tensor:
    """`L_f = MSE(h_l(x_f), c * u)` over the forget answers (`activation_mse`).

    Pushing the layer's outputs to one fixed large-ish vector scrambles what later layers read from them, so the
    forget answers lose their support in the representation rather than only in the logits.

    Args:
        forget: forget-batch outputs with `hidden` (`[B, L, D]` at the method's layer).
        params: `steering_coeff` (c, > 0) and `direction_seed` (seed of u).

    Raises:
        ValueError: when `forget.hidden` is None.
    """
    hidden = required(forget.hidden, "the forget batch's outputs of its layer (method.layer)", "rmu")
    target = steering_target(hidden.shape[-1], params["steering_coeff"], int(params["direction_seed"]))
    return activation_mse(hidden, target, forget.labels)


def embed_diff(retain: SequenceOutputs) -> torch.Tensor:
    """`L_r = MSE(h_l(x_r), h_l^frozen(x_r))` over the retain answers (`activation_mse`): 0 while the layer's
    outputs on the retain set are the frozen model's.

    Raises:
        ValueError: when `retain.hidden` or `retain.ref_hidden` is None.
    """
    hidden = required(retain.hidden, "the retain batch's outputs of its layer", "the embed_diff retain loss")
    ref = required(retain.ref_hidden, "the frozen model's outputs of that layer on the retain batch",
                   "the embed_diff retain loss")
    return activation_mse(hidden, ref, retain.labels)
