"""`Objective`: base method + lambda * CLReg + a method's dual variable, and the forwards it asks for.

Every registered method x CLReg form x positives x symmetric, on the hand-built batch of `handmade.py` and fixed
representations; `L_CL` is checked against the by-hand forms of `test_clreg.py`, the base against
`unlearning_loss` (checked by hand in `test_compose.py`).
"""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.objectives import METHODS, ForwardOutputs, SequenceOutputs, build_objective, unlearning_loss
from trainables.objectives.pdu import pdu_dual_step

from .handmade import LABELS, LOGITS, REF_LOGITS, seq_nll
from .test_clreg import dpo_by_hand, infonce_by_hand

NUM_LAYERS = 4
Z_FORGET = torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
Z_FORGET_POS = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
Z_RETAIN = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 1.0, 0.0]])
Z_RETAIN_POS = torch.tensor([[2.0, 0.5, 1.0], [-1.0, 0.0, 1.0]])
HIDDEN = torch.arange(20.0).reshape(2, 5, 2) / 10  # RMU's layer outputs: forget = HIDDEN, retain = -HIDDEN
METHOD_LAYER = 1  # RMU's layer in these configs (its default, 7, is deeper than the 4-layer model)
BY_HAND = {"dpo": dpo_by_hand, "infonce": infonce_by_hand}


def method_section(name: str) -> dict:
    """`method` of a config for `name`, its required parameters (no default) set to 0.3, its layer (RMU's) to
    METHOD_LAYER."""
    spec = METHODS.get(name)
    required = {key: 0.3 for key, value in spec.defaults.items() if value is None}
    return {"name": name, **required, **({"layer": METHOD_LAYER} if "layer" in spec.options else {})}


def outputs(symmetric: bool = True) -> ForwardOutputs:
    """Every output any method reads: DPO's preferred answers (the forget tensors' roles swapped), RMU's layer."""
    return ForwardOutputs(
        forget=SequenceOutputs(LOGITS, LABELS, REF_LOGITS, hidden=HIDDEN,
                               alternate=SequenceOutputs(REF_LOGITS, LABELS, LOGITS)),
        retain=SequenceOutputs(REF_LOGITS, LABELS, LOGITS, hidden=-HIDDEN, ref_hidden=HIDDEN),
        z_forget=Z_FORGET, z_forget_pos=Z_FORGET_POS, z_retain=Z_RETAIN,
        z_retain_pos=Z_RETAIN_POS if symmetric else None,
    )


def base_total(objective, out: ForwardOutputs) -> float:
    method = objective.method
    return unlearning_loss(method, out.forget, out.retain if method.uses_retain else None,
                           dual_lambda=objective.dual_lambda).total.item()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("positives", ["dropout", "paraphrase"])
@pytest.mark.parametrize("form", ["dpo", "infonce"])
@pytest.mark.parametrize("name", METHODS.names())
def test_total_is_base_plus_lambda_times_clreg(name, form, positives, symmetric):
    tau, lam = 0.3, 0.7
    cfg = TrialConfig.model_validate({"method": method_section(name), "clreg": {
        "tau": tau, "lambda": lam, "form": form, "positives": positives, "symmetric": symmetric, "layer": "last-2",
        "dropout": 0.2}})
    objective = build_objective(cfg, NUM_LAYERS)
    out = outputs(symmetric)
    terms = objective(out)

    l_cl = BY_HAND[form](Z_FORGET, Z_FORGET_POS, Z_RETAIN, tau)
    if symmetric:
        l_cl = 0.5 * (l_cl + BY_HAND[form](Z_RETAIN, Z_RETAIN_POS, Z_FORGET, tau))
    assert terms.clreg is not None and terms.clreg.item() == pytest.approx(l_cl, rel=1e-5)
    assert terms.total.item() == pytest.approx(base_total(objective, out) + lam * l_cl, rel=1e-5, abs=1e-6)
    assert (terms.retain is None) == (not objective.method.uses_retain)

    needs = objective.needs
    assert needs.retain and needs.layer == 2 and needs.dropout == 0.2  # CLReg's negatives need the retain batch
    assert needs.forget_view == positives and needs.retain_view == symmetric
    assert needs.ref_forget == METHODS.get(name).needs_ref and needs.ref_retain == (name == "rmu")  # embed_diff
    assert needs.method_layer == (METHOD_LAYER if name == "rmu" else None) and needs.alternate == (name == "dpo")


@pytest.mark.parametrize("off", [{"enabled": False}, {"lambda": 0.0}])
@pytest.mark.parametrize("name", METHODS.names())
def test_inactive_clreg_leaves_the_base_loss_and_asks_for_no_representations(name, off):
    objective = build_objective(TrialConfig.model_validate({"method": method_section(name), "clreg": off}),
                                NUM_LAYERS)
    out = outputs()
    terms = objective(out)
    assert objective.clreg is None and terms.clreg is None
    assert terms.total.item() == base_total(objective, out)
    needs = objective.needs
    assert needs.layer is None and needs.forget_view is None and not needs.retain_view
    assert needs.retain == objective.method.uses_retain  # gradascent without CLReg needs no retain forward


def test_kl_retain_loss_asks_for_reference_logits_on_the_retain_batch():
    cfg = TrialConfig.model_validate({"method": {"name": "graddiff", "retain_loss": "kl"}})
    needs = build_objective(cfg, NUM_LAYERS).needs
    assert needs.ref_retain and not needs.ref_forget


def test_a_missing_representation_is_named():
    cfg = TrialConfig.model_validate({"method": {"name": "simnpo"}, "clreg": {"symmetric": True}})
    out = outputs(symmetric=False)
    with pytest.raises(ValueError, match="z_retain_pos"):
        build_objective(cfg, NUM_LAYERS)(out)


def nll(logits: torch.Tensor) -> float:
    sums, counts = seq_nll(logits)
    return sum(sums) / sum(counts)


def test_dual_variable_moves_by_the_methods_hook_enters_the_total_and_round_trips():
    cfg = TrialConfig.model_validate({"method": {"name": "pdu", "eps": 0.3, "eta": 2.0, "gamma": 2.0, "alpha": 1.0},
                                      "clreg": {"enabled": False}})
    objective = build_objective(cfg, NUM_LAYERS)
    assert objective.updates_dual and objective.dual_lambda == 1.0  # starts at alpha
    objective.dual_step(0.5)
    assert objective.dual_lambda == pytest.approx(pdu_dual_step(1.0, 0.5, eps=0.3, eta=2.0)) == pytest.approx(1.4)
    assert objective.epoch_metrics() == {"dual_lambda": objective.dual_lambda}

    terms = objective(ForwardOutputs(forget=SequenceOutputs(LOGITS, LABELS), retain=SequenceOutputs(REF_LOGITS,
                                                                                                    LABELS)))
    assert terms.total.item() == pytest.approx(2.0 * terms.forget.item() + 1.4 * (nll(REF_LOGITS) - 0.3), rel=1e-6)

    resumed = build_objective(cfg, NUM_LAYERS)
    resumed.load_state_dict({"seed": 0, "epoch": 1, **objective.state_dict()})
    assert resumed.dual_lambda == objective.dual_lambda
    objective.dual_step(0.0)  # a satisfied constraint lowers it: 1.4 + 2 * (0 - 0.3)
    assert objective.dual_lambda == pytest.approx(0.8)
    objective.dual_step(0.0)
    objective.dual_step(0.0)  # 0.2 - 0.6: clipped, never below 0
    assert objective.dual_lambda == 0.0


def test_a_method_without_a_dual_variable_has_no_dual_state():
    objective = build_objective(TrialConfig.model_validate({"method": {"name": "npo"}}), NUM_LAYERS)
    assert not objective.updates_dual and objective.epoch_metrics() == {}
    assert objective.state_dict() == {"dual_lambda": None}
    objective.load_state_dict({"dual_lambda": None})
    assert objective.dual_lambda is None


def test_loss_terms_values_use_the_reported_names():
    cfg = TrialConfig.model_validate({"method": {"name": "gradascent"}})
    terms = build_objective(cfg, NUM_LAYERS)(outputs(symmetric=False))
    assert set(terms.values()) == {"loss", "forget", "clreg"}  # gradascent: no retain term
    assert terms.values()["loss"] == terms.total.item()
