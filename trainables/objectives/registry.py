"""The base unlearning methods by name, and the resolution of a `MethodConfig` into checked hyperparameters.

Each method is registered once, here, as a `MethodSpec`: its forget loss, its hyperparameters with
open-unlearning's defaults (the keys are exactly the parameters it accepts), whether its forget loss needs the
reference model, what else it reads (its own layer's outputs, preference pairs), and, for a constrained method, the
dual variable that replaces its fixed retain weight. The total
loss is assembled by `compose.unlearning_loss`, so no method inherits from another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from trainables.config import MethodConfig
from trainables.objectives import ceu, dpo, gradascent, graddiff, npo, pdu, rmu, satimp, simnpo, undial, wga
from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.retain import READS_REFERENCE, RETAIN_LOSSES
from trainables.registry import Registry

ForgetLoss = Callable[[SequenceOutputs, Mapping[str, float]], torch.Tensor]
Option = str | int  # a method option that is not a number: a layer, a parameter-name pattern

# MethodConfig fields that are not hyperparameters of the loss.
_NOT_HYPERPARAMETERS = frozenset({"name", "retain_loss"})


@dataclass(frozen=True)
class DualAscent:
    """A retain weight that is a dual variable, moved by the training loop, instead of the fixed `alpha`.

    The objective (`trainables.objectives.objective.Objective`) holds the variable, starts it with `start`, calls
    `step` once per optimizer step with the step's all-reduced mean retain loss, and carries it through checkpoints;
    `unlearning_loss` adds `retain_term` in place of `alpha * L_r`.

    Attributes:
        start: `params -> lam`, the variable before the first step.
        step: `(lam, retain_loss_mean, params) -> lam`, the next value.
        retain_term: `(L_r, lam, params) -> scalar`, the retain part of the total.
    """

    start: Callable[[Mapping[str, float]], float]
    step: Callable[[float, float, Mapping[str, float]], float]
    retain_term: Callable[[torch.Tensor, float, Mapping[str, float]], torch.Tensor]


@dataclass(frozen=True)
class MethodSpec:
    """One base unlearning method.

    Attributes:
        name: registry name (the `method.name` of a config).
        forget_loss: `(forget: SequenceOutputs, params) -> scalar` `L_f`.
        defaults: every hyperparameter the method accepts, with its default; None marks a required one.
        needs_ref: whether `forget_loss` reads `ref_logits` (the retain loss may add the need, see `resolve_method`).
        doc: one line for listings and docs.
        dual: the dual variable that weights the retain term, for a constrained method; None: `alpha` does.
        options: the options it accepts that are not numbers, with their defaults: `layer` (its own layer, whose
            per-token outputs `forget_loss` reads as `hidden`) and `trainable` (the pattern of the parameters it
            trains).
        reads_alternate: whether `forget_loss` reads `alternate`, the forget prompts with preferred answers.
        retain_default: the retain loss when `method.retain_loss` is unset.
    """

    name: str
    forget_loss: ForgetLoss
    defaults: Mapping[str, float | None]
    needs_ref: bool
    doc: str
    dual: DualAscent | None = None
    options: Mapping[str, Option] = field(default_factory=lambda: MappingProxyType({}))
    reads_alternate: bool = False
    retain_default: str = "nll"

    @property
    def accepts(self) -> list[str]:
        """Every `method.*` field it takes, sorted."""
        return sorted({*self.defaults, *self.options})


def _has_retain_term(spec: MethodSpec, params: Mapping[str, float]) -> bool:
    return spec.dual is not None or params.get("alpha", 0.0) > 0.0


@dataclass(frozen=True)
class ResolvedMethod:
    """A method with every hyperparameter set and checked, ready for `unlearning_loss`.

    Attributes:
        spec: the registered method.
        params: value of every parameter in `spec.defaults` (config value, else default).
        retain_loss: "nll", "kl" or "embed_diff".
        needs_ref: whether the training loop must run the frozen reference model (on the forget batch when
            `spec.needs_ref`, on the retain batch when the kl retain loss is used).
    """

    spec: MethodSpec
    params: dict[str, float]
    retain_loss: str
    needs_ref: bool
    options: dict[str, Option]

    @property
    def layer(self) -> Option | None:
        """The method's own layer as written (`method.layer`, RMU's), None for a method without one."""
        return self.options.get("layer")

    @property
    def trainable(self) -> str | None:
        """The pattern parameter names must fully match to be trained (`method.trainable`), None: every one."""
        return self.options.get("trainable")

    @property
    def uses_retain(self) -> bool:
        """Whether the total loss has a retain term (so a retain forward with labels is needed for the base loss).

        False for gradascent (it ignores the retain set) and for alpha = 0; a method with a dual variable (PDU)
        always has one, since its weight is that variable, which can grow from alpha = 0.
        """
        return _has_retain_term(self.spec, self.params)


METHODS: Registry[MethodSpec] = Registry("method")


def _register(
    name: str, forget_loss: ForgetLoss, defaults: Mapping[str, float | None], needs_ref: bool, doc: str,
    dual: DualAscent | None = None, options: Mapping[str, Option] | None = None, reads_alternate: bool = False,
    retain_default: str = "nll",
) -> None:
    METHODS.register(name)(MethodSpec(name, forget_loss, MappingProxyType(dict(defaults)), needs_ref, doc, dual,
                                      MappingProxyType(dict(options or {})), reads_alternate, retain_default))


_register(
    "gradascent",
    gradascent.forget_loss,
    {"gamma": 1.0},
    needs_ref=False,
    doc="gradient ascent on the forget NLL; no retain term (the retain set is ignored)",
)
_register(
    "graddiff",
    graddiff.forget_loss,
    {"gamma": 1.0, "alpha": 1.0},
    needs_ref=False,
    doc="gradient ascent on forget + gradient descent on retain",
)
_register(
    "npo",
    npo.forget_loss,
    {"beta": 0.1, "gamma": 1.0, "alpha": 1.0},
    needs_ref=True,
    doc="negative preference optimization against the reference model (arXiv 2404.05868)",
)
_register(
    "simnpo",
    simnpo.forget_loss,
    {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0},
    needs_ref=False,
    doc="reference-free, length-normalised NPO (arXiv 2410.07163)",
)
_register(
    "undial",
    undial.forget_loss,
    {"beta": 10.0, "gamma": 1.0, "alpha": 0.0},
    needs_ref=True,
    doc="self-distillation to reference logits with the answer token lowered (arXiv 2402.10052)",
)
_register(
    "pdu",
    pdu.forget_loss,
    {"gamma": 1.0, "alpha": 1.0, "eps": None, "eta": 1.0},
    needs_ref=False,
    doc="logit-margin flattening under the constraint L_r <= eps, primal-dual (arXiv 2506.05314)",
    dual=DualAscent(start=pdu.dual_start, step=pdu.dual_step, retain_term=pdu.retain_term),
)
_register(
    "wga",
    wga.forget_loss,
    {"beta": 1.0, "gamma": 1.0, "alpha": 1.0},
    needs_ref=False,
    doc="gradient ascent with each token weighted by its probability^beta (arXiv 2502.19301)",
)
_register(
    "satimp",
    satimp.forget_loss,
    {"beta1": 5.0, "beta2": 1.0, "gamma": 0.1, "alpha": 1.0},
    needs_ref=False,
    doc="gradient ascent with token weights p^beta1 * (1 - p)^beta2, saturation and importance (arXiv 2505.11953)",
)
_register(
    "ceu",
    ceu.forget_loss,
    {"gamma": 1.0, "ignore_first_n_answer_tokens": 1},
    needs_ref=False,
    doc="cross entropy to the model's own distribution without the answer token; no retain term (arXiv 2503.01224)",
)
_register(
    "rmu",
    rmu.forget_loss,
    {"steering_coeff": 2.0, "direction_seed": 0, "gamma": 1.0, "alpha": 1.0},
    needs_ref=False,
    doc="steers a layer's outputs on forget answers to a random direction, keeps retain outputs (arXiv 2403.03218)",
    options={"layer": 7, "trainable": ".*"},
    retain_default="embed_diff",
)
_register(
    "dpo",
    dpo.forget_loss,
    {"beta": 0.1, "gamma": 1.0, "alpha": 1.0},
    needs_ref=True,
    doc="DPO preferring an 'I don't know' to the forget answer, IdkDPO (arXiv 2305.18290, 2401.06121)",
    reads_alternate=True,
)


def resolve_method(cfg: MethodConfig) -> ResolvedMethod:
    """Look up `cfg.name` and fill in its hyperparameters, refusing any the method does not use.

    A foreign hyperparameter is an error rather than ignored because in a sweep it would silently make trials that
    differ only in an unused value (e.g. a beta grid over graddiff). The reference model is needed when the forget
    loss reads it or when the kl or embed_diff retain loss is actually part of the total (`uses_retain`);
    gradascent with `retain_loss: kl` is accepted and needs no reference, since gradascent has no retain term at all.

    Args:
        cfg: the trial's method section.

    Returns:
        The resolved method.

    Raises:
        UnknownNameError: for an unregistered name, listing the registered ones.
        ValueError: for a hyperparameter the method does not use, a required one left unset (PDU's eps), or the
            embed_diff retain loss for a method without a layer of its own.
    """
    spec = METHODS.get(cfg.name)
    given = {
        key: getattr(cfg, key)
        for key in type(cfg).model_fields
        if key not in _NOT_HYPERPARAMETERS and getattr(cfg, key) is not None
    }
    for key in sorted(given):
        if key not in spec.defaults and key not in spec.options:
            raise ValueError(f"method.{key} is not a parameter of {spec.name}; its parameters: "
                             f"{', '.join(spec.accepts)}")
    params = {key: given.get(key, default) for key, default in spec.defaults.items()}
    missing = sorted(key for key, value in params.items() if value is None)
    if missing:
        names = ", ".join(f"method.{key}" for key in missing)
        raise ValueError(f"{names} is required by {spec.name} (it has no default); set it in the config")
    values = {key: float(value) for key, value in params.items()}
    retain = cfg.retain_loss or spec.retain_default
    if retain == "embed_diff" and "layer" not in spec.options:
        allowed = ", ".join(r for r in RETAIN_LOSSES if r != "embed_diff")
        raise ValueError(f"method.retain_loss embed_diff compares the outputs of the method's own layer, which "
                         f"{spec.name} has not; allowed for {spec.name}: {allowed}")
    needs_ref = spec.needs_ref or (retain in READS_REFERENCE and _has_retain_term(spec, values))
    options = {key: given.get(key, default) for key, default in spec.options.items()}
    return ResolvedMethod(spec, values, retain, needs_ref, options)
