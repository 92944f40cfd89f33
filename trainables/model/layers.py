"""Target layers and sequence representations: one convention shared by CLReg training and the metrics.

Convention (transformers' Llama, checked on 5.23): `output_hidden_states=True` returns L+1 tensors;
`hidden_states[i]` is the input of decoder layer i and `hidden_states[L]` (= `hidden_states[-1]`) is the last
layer's output *after* the final RMSNorm. "Last-k" is `hidden_states[-k]`, i.e. the output of decoder layer
`L - k` (0-based); Last-1 includes the final norm, the others are raw residual-stream outputs. An absolute index
`j` means the output of decoder layer `j`, i.e. `hidden_states[j + 1]`.
"""

from __future__ import annotations

import torch


class LayerError(ValueError):
    """The configured target layer does not exist in the model."""


def resolve_layer(spec: str | int, num_layers: int) -> int:
    """Map 'last-k' or an absolute index to the 0-based decoder layer whose output is the representation.

    Raises:
        LayerError: naming the allowed range when the layer is beyond the model's depth.
    """
    allowed = f"allowed: last-1..last-{num_layers} or 0..{num_layers - 1} (the model has {num_layers} layers)"
    if isinstance(spec, str):
        if not spec.startswith("last-") or not spec[5:].isdigit():
            raise LayerError(f"clreg.layer {spec!r} is not 'last-k' or an index; {allowed}")
        k = int(spec[5:])
        if not 1 <= k <= num_layers:
            raise LayerError(f"clreg.layer {spec!r} is beyond the model's depth; {allowed}")
        return num_layers - k
    if not 0 <= spec < num_layers:
        raise LayerError(f"clreg.layer {spec} is beyond the model's depth; {allowed}")
    return spec


def hidden_state_index(layer: int) -> int:
    """Index into `output_hidden_states` of decoder layer `layer`'s output."""
    return layer + 1


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` `[B, L, D]` over non-padding positions (`attention_mask` `[B, L]`) -> `[B, D]`.

    Not normalised: `clreg_loss` and the entanglement metrics normalise where their definitions say so.
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
