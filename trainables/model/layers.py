"""Target layers and sequence representations: one convention shared by CLReg training and the metrics.

Convention (transformers' Llama, checked on 5.23): `output_hidden_states=True` returns L+1 tensors;
`hidden_states[i]` is the input of decoder layer i and `hidden_states[L]` (= `hidden_states[-1]`) is the last
layer's output *after* the final RMSNorm. "Last-k" is `hidden_states[-k]`, i.e. the output of decoder layer
`L - k` (0-based); Last-1 includes the final norm, the others are raw residual-stream outputs. An absolute index
`j` means the output of decoder layer `j`, i.e. `hidden_states[j + 1]`.

`LayerSpec` is the one parser of a layer as configs write it; everything that reads `clreg.layer` (config
validation, search spaces, training, metrics, reports) goes through it.
"""

from __future__ import annotations

import re
import reprlib
import typing
from dataclasses import dataclass

if typing.TYPE_CHECKING:
    import torch

_LAST_K = re.compile(r"last-([0-9]+)")


class LayerError(ValueError):
    """The configured target layer is not a layer spec, or does not exist in the model."""


def allowed_layers(num_layers: int) -> str:
    """The layers a model of `num_layers` decoder layers has, in the words error messages use."""
    return f"allowed: last-1..last-{num_layers} or 0..{num_layers - 1}"


@dataclass(frozen=True)
class LayerSpec:
    """A target layer as written: `last-k` (k-th from the top, `from_top`) or an absolute 0-based index.

    It knows the model's depth only when asked for an `index`, since one config serves models of any depth.
    """

    number: int
    from_top: bool

    @classmethod
    def parse(cls, value: str | int) -> LayerSpec:
        """The spec of a config value: 'last-k' with k >= 1, or an int index >= 0.

        A digit string is refused: a config that quotes an index means something else than it says.

        Raises:
            LayerError: naming the value and the two allowed spellings.
        """
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise LayerError(f"a layer index must be >= 0 (use 'last-k' to count from the top), got {value}")
            return cls(value, from_top=False)
        match = _LAST_K.fullmatch(value) if isinstance(value, str) else None
        if match is None or int(match[1]) < 1:
            raise LayerError(f"a layer must be 'last-k' with k >= 1 or a 0-based index, got {reprlib.repr(value)}")
        return cls(int(match[1]), from_top=True)

    @classmethod
    def from_param(cls, text: str | int) -> LayerSpec:
        """The spec of a logged parameter: MLflow stores params as strings, so index 3 comes back as '3'."""
        return cls.parse(int(text) if isinstance(text, str) and text.isdigit() else text)

    @property
    def value(self) -> str | int:
        """The spelling configs, trial records and MLflow params use: 'last-2' or 2."""
        return f"last-{self.number}" if self.from_top else self.number

    @property
    def order(self) -> tuple[int, int]:
        """Sort key, bottom-up without knowing the depth: absolute indices, then last-k from large k to last-1."""
        return (1, -self.number) if self.from_top else (0, self.number)

    def fits(self, num_layers: int) -> bool:
        """Whether a model of `num_layers` decoder layers has this layer."""
        return 1 <= self.number <= num_layers if self.from_top else self.number < num_layers

    def index(self, num_layers: int, field: str = "clreg.layer") -> int:
        """The 0-based decoder layer whose output is the representation.

        Raises:
            LayerError: naming `field` and the allowed range when the layer is beyond the model's depth.
        """
        if not self.fits(num_layers):
            raise LayerError(f"{field} {self.value!r} is beyond the model's depth; {allowed_layers(num_layers)} "
                             f"(the model has {num_layers} layers)")
        return num_layers - self.number if self.from_top else self.number

    def __str__(self) -> str:
        return str(self.value)


def resolve_layer(value: str | int, num_layers: int, field: str = "clreg.layer") -> int:
    """`LayerSpec.parse(value).index(num_layers)`, with the allowed range in every error (the caller has a model).

    Args:
        field: the config field the value came from (`clreg.layer`, RMU's `method.layer`), named in errors.

    Raises:
        LayerError: when `value` is not a layer spec or is beyond the model's depth.
    """
    try:
        spec = LayerSpec.parse(value)
    except LayerError as error:
        raise LayerError(f"{field}: {error}; {allowed_layers(num_layers)} (the model has {num_layers} layers)"
                         ) from None
    return spec.index(num_layers, field)


def hidden_state_index(layer: int) -> int:
    """Index into `output_hidden_states` of decoder layer `layer`'s output."""
    return layer + 1


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` `[B, L, D]` over non-padding positions (`attention_mask` `[B, L]`) -> `[B, D]`.

    Not normalised: `clreg_loss` and the entanglement metrics normalise where their definitions say so.
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
