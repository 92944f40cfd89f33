"""The forward passes of one unlearning micro-step, run as an objective's `ForwardNeeds` say, into `ForwardOutputs`.

The model runs once per batch. With CLReg the target decoder layer is exposed: its output becomes the pooled
representation, and its input and other arguments (attention mask, rotary embeddings, position ids) are captured
by a forward pre-hook. Llama has no hidden-state dropout, so the dropout view is made explicitly: dropout on that
captured *input*, then only the target layer (plus the final norm for Last-1) runs again. That keeps the view exact
for any transformers version and any padding, and costs one layer instead of a second full forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainables.model.layers import hidden_state_index, mean_pool
from trainables.model.loading import decoder_parts
from trainables.objectives import ForwardNeeds, ForwardOutputs, SequenceOutputs, dropout_view

Batch = dict[str, torch.Tensor]


@dataclass
class LayerForward:
    """Outputs of one forward pass with the target layer exposed.

    Attributes:
        logits: `[B, L, V]`.
        hidden: Target-layer output `[B, L, D]` (after the final norm when the target is the last layer).
        layer_input: Input of the target decoder layer `[B, L, D]`.
        layer_kwargs: The other arguments the model passed to the target layer (mask, rotary embeddings, ...).
        hidden_states: every layer's output as the model returned them (`trainables.model.layers` convention).
    """

    logits: torch.Tensor
    hidden: torch.Tensor
    layer_input: torch.Tensor
    layer_kwargs: dict[str, Any]
    hidden_states: tuple[torch.Tensor, ...]


def forward_at_layer(forward, module, batch: Batch, layer: int) -> LayerForward:
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
        hidden_states=out.hidden_states,
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


@dataclass
class Batches:
    """The collated batches of one micro-step (`input_ids`, `attention_mask`, `labels`, each `[B, L]`).

    Attributes:
        forget: forget sequences.
        retain: retain sequences of the same step, None when the objective needs none.
        paraphrase: the forget sequences with their paraphrased answers (CLReg's paraphrase positives), row i the
            paraphrase of forget row i.
        alternate: the forget prompts with their preferred answers (DPO's winners), row i for forget row i.
    """

    forget: Batch
    retain: Batch | None = None
    paraphrase: Batch | None = None
    alternate: Batch | None = None


class ForwardCollector:
    """Runs the forwards an objective needs and returns what it reads.

    Args:
        forward: what runs the trained model: a DeepSpeed engine, or the model itself.
        module: the trained model (`engine.module`), whose target layer is hooked and rerun.
        needs: the objective's `ForwardNeeds`.
        ref: the frozen reference model (or its inference engine), required when `needs` asks for its logits.

    Raises:
        ValueError: when `needs` asks for reference logits and `ref` is None.
    """

    def __init__(self, forward, module, needs: ForwardNeeds, ref=None) -> None:
        if (needs.ref_forget or needs.ref_retain) and ref is None:
            raise ValueError("the objective needs the frozen reference model's logits, and no reference was given")
        self.forward, self.module, self.needs, self.ref = forward, module, needs, ref

    def __call__(self, batches: Batches, gen: torch.Generator) -> ForwardOutputs:
        """One micro-step's outputs; `gen` draws the dropout masks (seeded per micro-batch by the caller)."""
        n = self.needs
        forget, f = self._outputs(batches.forget, n.ref_forget)
        retain, r = self._outputs(batches.retain, n.ref_retain) if n.retain else (None, None)
        if n.alternate:
            forget.alternate, _ = self._outputs(batches.alternate, n.ref_forget)
        out = ForwardOutputs(forget=forget, retain=retain)
        if n.layer is None:
            return out
        f_mask, r_mask = batches.forget["attention_mask"], batches.retain["attention_mask"]
        out.z_forget, out.z_retain = mean_pool(f.hidden, f_mask), mean_pool(r.hidden, r_mask)
        if n.forget_view == "paraphrase":
            _, p, _ = self._run(batches.paraphrase)
            out.z_forget_pos = mean_pool(p.hidden, batches.paraphrase["attention_mask"])
        elif n.forget_view == "dropout":
            out.z_forget_pos = mean_pool(self._dropout_rerun(f, gen), f_mask)
        if n.retain_view:
            out.z_retain_pos = mean_pool(self._dropout_rerun(r, gen), r_mask)
        return out

    def _outputs(self, batch: Batch, with_ref: bool) -> tuple[SequenceOutputs, LayerForward | None]:
        """The model's (and with `with_ref` the reference model's) outputs on `batch`, with the method layer's
        outputs where the method reads them, and the exposed CLReg target layer when representations are needed."""
        logits, fwd, hidden = self._run(batch)
        out = SequenceOutputs(logits, batch["labels"], hidden=hidden)
        if with_ref:
            out.ref_logits, out.ref_hidden = self._ref(batch)
        return out, fwd

    def _run(self, batch: Batch) -> tuple[torch.Tensor, LayerForward | None, torch.Tensor | None]:
        """Logits of `batch`, its exposed target layer when representations are needed, and the method layer's
        outputs when the method reads them."""
        n = self.needs
        if n.layer is None:
            if n.method_layer is None:
                return self.forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, \
                    None, None
            out = self.forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               output_hidden_states=True, use_cache=False)
            return out.logits, None, self._method_hidden(out.hidden_states)
        fwd = forward_at_layer(self.forward, self.module, batch, n.layer)
        return fwd.logits, fwd, self._method_hidden(fwd.hidden_states)

    def _ref(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reference model's logits on `batch`, and its method-layer outputs when the method reads them."""
        with torch.no_grad():
            out = self.ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           output_hidden_states=self.needs.method_layer is not None, use_cache=False)
        return out.logits, self._method_hidden(out.hidden_states)

    def _method_hidden(self, hidden_states: tuple[torch.Tensor, ...] | None) -> torch.Tensor | None:
        layer = self.needs.method_layer
        return None if layer is None else hidden_states[hidden_state_index(layer)]

    def _dropout_rerun(self, fwd: LayerForward, gen: torch.Generator) -> torch.Tensor:
        """Second view of the target-layer output: dropout on the layer's input, then that layer again."""
        view = dropout_view(fwd.layer_input, self.needs.dropout, gen)
        return rerun_layer(self.module, self.needs.layer, view, fwd.layer_kwargs)
