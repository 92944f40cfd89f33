"""`resolve_method`: defaults, overrides, refused parameters and the reference-model flag."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainables.config import MethodConfig
from trainables.objectives import METHODS, resolve_method
from trainables.registry import UnknownNameError

DEFAULTS = {
    "gradascent": {"gamma": 1.0},
    "graddiff": {"gamma": 1.0, "alpha": 1.0},
    "npo": {"beta": 0.1, "gamma": 1.0, "alpha": 1.0},
    "simnpo": {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0},
    "undial": {"beta": 10.0, "gamma": 1.0, "alpha": 0.0},
    "pdu": {"gamma": 1.0, "alpha": 1.0, "eps": None, "eta": 1.0},
    "wga": {"beta": 1.0, "gamma": 1.0, "alpha": 1.0},
    "satimp": {"beta1": 5.0, "beta2": 1.0, "gamma": 0.1, "alpha": 1.0},
    "ceu": {"gamma": 1.0, "ignore_first_n_answer_tokens": 1.0},
    "rmu": {"steering_coeff": 2.0, "direction_seed": 0.0, "gamma": 1.0, "alpha": 1.0},
    "dpo": {"beta": 0.1, "gamma": 1.0, "alpha": 1.0},
}
RETAIN_DEFAULT = {"rmu": "embed_diff"}  # every other method: nll


def test_registered_methods_and_defaults():
    assert METHODS.names() == sorted(DEFAULTS)
    for name, defaults in DEFAULTS.items():
        spec = METHODS.get(name)
        assert spec.name == name and dict(spec.defaults) == defaults
    with pytest.raises(TypeError):
        METHODS.get("npo").defaults["beta"] = 1.0  # shared specs are read-only


@pytest.mark.parametrize("name", [n for n in DEFAULTS if n != "pdu"])
def test_defaults_fill_unset_parameters(name):
    method = resolve_method(MethodConfig(name=name))
    assert method.params == DEFAULTS[name] and method.retain_loss == RETAIN_DEFAULT.get(name, "nll")
    assert method.options == ({"layer": 7, "trainable": ".*"} if name == "rmu" else {})


def test_config_values_override_defaults():
    method = resolve_method(MethodConfig(name="simnpo", beta=2.0, delta=0.5))
    assert method.params == {"beta": 2.0, "delta": 0.5, "gamma": 0.125, "alpha": 1.0}


def test_unknown_method_lists_the_names():
    with pytest.raises(UnknownNameError) as err:
        resolve_method(MethodConfig(name="npoo"))
    assert "ceu, dpo, gradascent, graddiff, npo, pdu, rmu, satimp, simnpo, undial, wga" in str(err.value)


@pytest.mark.parametrize("given,message", [
    ({"name": "graddiff", "beta": 0.5}, "method.beta is not a parameter of graddiff; its parameters: alpha, gamma"),
    ({"name": "gradascent", "alpha": 1.0}, "method.alpha is not a parameter of gradascent; its parameters: gamma"),
    ({"name": "wga", "delta": 0.5}, "method.delta is not a parameter of wga; its parameters: alpha, beta, gamma"),
    ({"name": "satimp", "beta": 1.0},
     "method.beta is not a parameter of satimp; its parameters: alpha, beta1, beta2, gamma"),
    ({"name": "wga", "beta1": 5.0}, "method.beta1 is not a parameter of wga; its parameters: alpha, beta, gamma"),
    ({"name": "ceu", "alpha": 1.0},  # CE-U has no retain term
     "method.alpha is not a parameter of ceu; its parameters: gamma, ignore_first_n_answer_tokens"),
    ({"name": "satimp", "ignore_first_n_answer_tokens": 0},
     "method.ignore_first_n_answer_tokens is not a parameter of satimp; its parameters: alpha, beta1, beta2, gamma"),
    ({"name": "npo", "layer": "last-2"}, "method.layer is not a parameter of npo; its parameters: alpha, beta, gamma"),
    ({"name": "dpo", "steering_coeff": 2.0},
     "method.steering_coeff is not a parameter of dpo; its parameters: alpha, beta, gamma"),
    ({"name": "rmu", "beta": 0.1},
     "method.beta is not a parameter of rmu; its parameters: alpha, direction_seed, gamma, layer, steering_coeff, "
     "trainable"),
    ({"name": "npo", "retain_loss": "embed_diff"},
     "method.retain_loss embed_diff compares the outputs of the method's own layer, which npo has not; allowed for "
     "npo: nll, kl"),
])
def test_a_parameter_the_method_does_not_use_is_refused(given, message):
    with pytest.raises(ValueError) as err:
        resolve_method(MethodConfig(**given))
    assert str(err.value) == message


def test_ceu_takes_a_whole_number_of_skipped_tokens():
    assert resolve_method(MethodConfig(name="ceu", ignore_first_n_answer_tokens=0)).params[
        "ignore_first_n_answer_tokens"] == 0
    for bad in (1.5, -1):
        with pytest.raises(ValidationError, match="ignore_first_n_answer_tokens"):
            MethodConfig(name="ceu", ignore_first_n_answer_tokens=bad)


def test_pdu_requires_eps():
    with pytest.raises(ValueError, match=r"method\.eps is required by pdu"):
        resolve_method(MethodConfig(name="pdu"))
    method = resolve_method(MethodConfig(name="pdu", eps=0.3))
    assert method.params == {"gamma": 1.0, "alpha": 1.0, "eps": 0.3, "eta": 1.0}


@pytest.mark.parametrize(
    ("cfg", "needs_ref", "uses_retain"),
    [
        (MethodConfig(name="npo"), True, True),
        (MethodConfig(name="undial"), True, False),
        (MethodConfig(name="simnpo"), False, True),
        (MethodConfig(name="simnpo", retain_loss="kl"), True, True),
        (MethodConfig(name="graddiff", retain_loss="kl", alpha=0.0), False, False),
        (MethodConfig(name="gradascent", retain_loss="kl"), False, False),  # gradascent ignores the retain set
        (MethodConfig(name="pdu", eps=0.3, alpha=0.0, retain_loss="kl"), True, True),  # the dual variable can grow
        (MethodConfig(name="wga"), False, True),  # open-unlearning loads a reference for WGA; its loss never reads it
        (MethodConfig(name="wga", retain_loss="kl"), True, True),
        (MethodConfig(name="satimp"), False, True),
        (MethodConfig(name="ceu", retain_loss="kl"), False, False),  # like gradascent, CE-U ignores the retain set
        (MethodConfig(name="rmu"), True, True),  # embed_diff: the frozen model's layer outputs on the retain batch
        (MethodConfig(name="rmu", retain_loss="nll"), False, True),
        (MethodConfig(name="rmu", alpha=0.0), False, False),
        (MethodConfig(name="dpo"), True, True),
    ],
)
def test_reference_model_and_retain_term_flags(cfg, needs_ref, uses_retain):
    method = resolve_method(cfg)
    assert method.needs_ref is needs_ref and method.uses_retain is uses_retain


def test_rmu_options_are_set_and_checked_where_written():
    method = resolve_method(MethodConfig(name="rmu", layer="last-3", trainable=r"model\.layers\.[0-2]\..*"))
    assert (method.layer, method.trainable) == ("last-3", r"model\.layers\.[0-2]\..*")
    with pytest.raises(ValidationError, match="layer"):
        MethodConfig(name="rmu", layer="top-1")
    with pytest.raises(ValidationError, match="not a regular expression"):
        MethodConfig(name="rmu", trainable="model.(")
