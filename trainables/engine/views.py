"""Forward passes that expose the target layer, and CLReg's cheap dropout view.

Llama has no hidden-state dropout, so CLReg's positive view is made explicitly: dropout on the *input* of the
target layer, then only the target layer (plus the final norm for Last-1) is run again. The layer's other inputs
(attention mask, rotary embeddings, position ids) are captured by a forward pre-hook during the normal forward,
which keeps this exact for any transformers version and any padding, and costs one layer instead of a second
full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainables.model.layers import hidden_state_index
from trainables.model.loading import decoder_parts


@dataclass
class LayerForward:
    """Outputs of one forward pass with the target layer exposed.

    Attributes:
        logits: `[B, L, V]`.
        hidden: Target-layer output `[B, L, D]` (after the final norm when the target is the last layer).
        layer_input: Input of the target decoder layer `[B, L, D]`.
        layer_kwargs: The other arguments the model passed to the target layer (mask, rotary embeddings, ...).
    """

    logits: torch.Tensor
    hidden: torch.Tensor
    layer_input: torch.Tensor
    layer_kwargs: dict[str, Any]


def forward_at_layer(forward, module, batch: dict[str, torch.Tensor], layer: int) -> LayerForward:
    """Run `forward(**inputs)` (a model or DeepSpeed engine) and capture decoder layer `layer` of `module`."""
    layers, _ = decoder_parts(module)
    captured: dict[str, Any] = {}

    def hook(_mod, args, kwargs):
        captured["input"] = args[0] if args else kwargs["hidden_states"]
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}

    handle = layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    return LayerForward(
        logits=out.logits,
        hidden=out.hidden_states[hidden_state_index(layer)],
        layer_input=captured["input"],
        layer_kwargs=captured["kwargs"],
    )


def rerun_layer(module, layer: int, layer_input: torch.Tensor, layer_kwargs: dict[str, Any]) -> torch.Tensor:
    """Run decoder layer `layer` of `module` again on `layer_input` with the captured arguments.

    Returns the layer output with the final norm applied when `layer` is the last one, i.e. the same tensor that
    `forward_at_layer(...).hidden` holds for an unmodified input.
    """
    layers, norm = decoder_parts(module)
    kwargs = dict(layer_kwargs, past_key_values=None, use_cache=False)
    out = layers[layer](layer_input, **kwargs)
    out = out[0] if isinstance(out, tuple) else out
    if layer == len(layers) - 1 and norm is not None:
        out = norm(out)
    return out
