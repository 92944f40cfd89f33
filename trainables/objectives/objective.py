"""A trial's training objective: the base method, `lambda * CLReg` and a method's dual variable, over tensors.

Built once per training run from the resolved config (`build_objective`), it answers two questions for the loop:
which forward passes a micro-step needs (`Objective.needs`: retain batch, reference model, target layer, which
positive views) and, given their outputs (`ForwardOutputs`), what the loss is (`Objective.__call__`). The loop runs
the forwards (`trainables.engine.forward.ForwardCollector`) and never decides any of this itself, so the loss of
every method x CLReg variant is tested here on hand-built tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from trainables.config import TrialConfig
from trainables.model.layers import resolve_layer
from trainables.objectives.clreg import clreg_term
from trainables.objectives.compose import LossTerms, unlearning_loss
from trainables.objectives.outputs import SequenceOutputs
from trainables.objectives.registry import ResolvedMethod, resolve_method
from trainables.objectives.retain import READS_REFERENCE


@dataclass(frozen=True)
class ForwardNeeds:
    """The forward passes one micro-step of an objective needs.

    Attributes:
        retain: run the model on the retain batch (the base method's retain term, or CLReg's negatives).
        ref_forget: run the frozen reference model on the forget batch (NPO, UNDIAL, DPO; and on the alternate
            batch when `alternate`).
        ref_retain: run it on the retain batch (the kl and embed_diff retain losses).
        layer: 0-based decoder layer whose output is pooled into representations; None: CLReg is off and no
            representation is needed.
        method_layer: 0-based decoder layer whose per-token outputs the base method reads (RMU's), of the model
            on every batch it runs and of the reference model on the retain batch; None: no method reads one.
        alternate: run the model on the forget prompts with their preferred answers (DPO).
        forget_view: how the forget anchors' positives are made: "dropout" (rerun of `layer` on a dropped-out
            input), "paraphrase" (a forward of the paraphrase batch), or None (no positives).
        retain_view: also make a dropout view of the retain batch (the symmetric CLReg variant).
        dropout: drop probability of the dropout views.
    """

    retain: bool
    ref_forget: bool
    ref_retain: bool
    layer: int | None = None
    forget_view: str | None = None
    retain_view: bool = False
    dropout: float = 0.0
    method_layer: int | None = None
    alternate: bool = False


@dataclass
class ForwardOutputs:
    """What the forwards of one micro-step produced, as the objective reads it.

    Attributes:
        forget: forget-batch logits, labels and (when `ForwardNeeds.ref_forget`) reference logits.
        retain: the same for the retain batch, None when `ForwardNeeds.retain` is False.
        z_forget: `[B_f, D]` mean-pooled forget representations at the target layer (CLReg's anchors).
        z_forget_pos: `[B_f, D]` their positive views.
        z_retain: `[B_r, D]` retain representations (the negatives).
        z_retain_pos: `[B_r, D]` retain positive views (symmetric CLReg only).
    """

    forget: SequenceOutputs
    retain: SequenceOutputs | None = None
    z_forget: torch.Tensor | None = None
    z_forget_pos: torch.Tensor | None = None
    z_retain: torch.Tensor | None = None
    z_retain_pos: torch.Tensor | None = None


@dataclass(frozen=True)
class CLRegTerm:
    """`lambda * L_CL` as configured, at a resolved decoder layer (`trainables.config.CLRegConfig`)."""

    lam: float
    tau: float
    form: str
    symmetric: bool
    positives: str
    dropout: float
    layer: int

    def __call__(self, out: ForwardOutputs) -> torch.Tensor:
        """The unweighted `L_CL` of one micro-step's representations.

        Raises:
            ValueError: when a representation this variant reads is missing (the forwards did not follow `needs`).
        """
        wanted = ["z_forget", "z_forget_pos", "z_retain"] + (["z_retain_pos"] if self.symmetric else [])
        missing = [name for name in wanted if getattr(out, name) is None]
        if missing:
            raise ValueError(f"CLReg needs {', '.join(missing)} (pooled at layer {self.layer})")
        return clreg_term(out.z_forget, out.z_forget_pos, out.z_retain, self.tau, self.form,
                          symmetric=self.symmetric, z_retain_pos=out.z_retain_pos if self.symmetric else None)


@dataclass
class Objective:
    """The loss of one training run, and the state it carries between steps (a method's dual variable).

    Attributes:
        method: the base method with its hyperparameters.
        clreg: the contrastive term, None when CLReg is not trained (`CLRegConfig.active` is False).
        dual_lambda: the method's dual variable (`MethodSpec.dual`), None for a method without one; moved by
            `dual_step`, saved and restored with the run's checkpoint through `state_dict`/`load_state_dict`.
        method_layer: the method's own layer (`method.layer`) resolved to a 0-based index, None without one.
    """

    method: ResolvedMethod
    clreg: CLRegTerm | None = None
    dual_lambda: float | None = None
    method_layer: int | None = None

    def __post_init__(self) -> None:
        if self.dual_lambda is None and self.method.spec.dual is not None:
            self.dual_lambda = self.method.spec.dual.start(self.method.params)

    @property
    def needs(self) -> ForwardNeeds:
        """The forwards a micro-step must run for this objective."""
        method, c = self.method, self.clreg
        ref_retain = method.retain_loss in READS_REFERENCE and method.uses_retain
        base = ForwardNeeds(retain=method.uses_retain or c is not None, ref_forget=method.spec.needs_ref,
                            ref_retain=ref_retain, method_layer=self.method_layer,
                            alternate=method.spec.reads_alternate)
        if c is None:
            return base
        return replace(base, retain=True, layer=c.layer, forget_view=c.positives, retain_view=c.symmetric,
                       dropout=c.dropout)

    def __call__(self, out: ForwardOutputs) -> LossTerms:
        """`LossTerms` of one micro-step: the base method's terms, and with CLReg `total = base + lambda * L_CL`.

        Raises:
            ValueError: when an output the objective needs is missing (see `needs`).
        """
        base = unlearning_loss(self.method, out.forget, out.retain if self.method.uses_retain else None,
                               dual_lambda=self.dual_lambda)
        if self.clreg is None:
            return base
        l_cl = self.clreg(out)
        return LossTerms(total=base.total + self.clreg.lam * l_cl, forget=base.forget, retain=base.retain,
                         clreg=l_cl)

    @property
    def updates_dual(self) -> bool:
        """Whether the loop must call `dual_step` after each optimizer step."""
        return self.method.spec.dual is not None

    def dual_step(self, retain_loss_mean: float) -> None:
        """Move the dual variable after one optimizer step (`retain_loss_mean`: that step's retain loss, averaged
        over every micro-batch of every worker, so all ranks move it alike)."""
        self.dual_lambda = self.method.spec.dual.step(self.dual_lambda, retain_loss_mean, self.method.params)

    def state_dict(self) -> dict[str, float | None]:
        """What a checkpoint must hold to resume the objective (the dual variable, None without one)."""
        return {"dual_lambda": self.dual_lambda}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`'s keys within a checkpoint's state."""
        if self.updates_dual:
            self.dual_lambda = state["dual_lambda"]

    def epoch_metrics(self) -> dict[str, float]:
        """Figures reported with each epoch: the dual variable, for a method with one."""
        return {"dual_lambda": self.dual_lambda} if self.updates_dual else {}


def build_objective(cfg: TrialConfig, num_layers: int) -> Objective:
    """The objective of a trial: `cfg.method` resolved, plus CLReg at `cfg.clreg.layer` when `cfg.clreg.active`.

    Args:
        cfg: the resolved trial config.
        num_layers: decoder layers of the trained model (to resolve "last-k").

    Raises:
        ValueError: as `resolve_method`, and `LayerError` for a target or method layer beyond the model's depth.
    """
    method = resolve_method(cfg.method)
    method_layer = None if method.layer is None else resolve_layer(method.layer, num_layers, "method.layer")
    c = cfg.clreg
    if not c.active:
        return Objective(method, method_layer=method_layer)
    term = CLRegTerm(lam=c.lam, tau=c.tau, form=c.form, symmetric=c.symmetric, positives=c.positives,
                     dropout=c.dropout, layer=resolve_layer(c.layer, num_layers))
    return Objective(method, term, method_layer=method_layer)
