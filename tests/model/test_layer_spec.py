"""`LayerSpec`: the one parser of `clreg.layer`, its spellings, depth check and bottom-up order."""

from __future__ import annotations

import pytest

from trainables.config import TrialConfig
from trainables.model.layers import LayerError, LayerSpec


@pytest.mark.parametrize(("value", "index"), [("last-1", 7), ("last-8", 0), ("last-3", 5), (0, 0), (7, 7)])
def test_parse_and_index_in_an_8_layer_model(value, index):
    spec = LayerSpec.parse(value)
    assert spec.index(8) == index and spec.fits(8)
    assert spec.value == value and LayerSpec.parse(spec.value) == spec


@pytest.mark.parametrize(("value", "message"), [
    ("top", "a layer must be 'last-k' with k >= 1 or a 0-based index, got 'top'"),
    ("last-0", "got 'last-0'"),
    ("3", "got '3'"),  # a quoted index is refused: the config says something else than it means
    (True, "got True"),
    (-1, "a layer index must be >= 0 (use 'last-k' to count from the top), got -1"),
])
def test_parse_refuses_what_is_not_a_layer(value, message):
    with pytest.raises(LayerError) as info:
        LayerSpec.parse(value)
    assert message in str(info.value)


@pytest.mark.parametrize("value", ["last-9", 8])
def test_a_layer_beyond_the_depth_names_the_allowed_range(value):
    spec = LayerSpec.parse(value)
    assert not spec.fits(8)
    with pytest.raises(LayerError, match=r"beyond the model's depth; allowed: last-1..last-8 or 0..7"):
        spec.index(8)


def test_mlflow_strings_and_the_bottom_up_order():
    """MLflow keeps params as text; the order needs no depth: indices first, then last-k down to last-1."""
    assert LayerSpec.from_param("3") == LayerSpec.parse(3) and LayerSpec.from_param("last-2").value == "last-2"
    values = ["last-1", 5, "last-4", 0, "last-2"]
    assert sorted(values, key=lambda v: LayerSpec.parse(v).order) == [0, 5, "last-4", "last-2", "last-1"]


def test_the_config_keeps_its_spelling():
    """YAML, the JSON sent to workers and MLflow params hold the same 'last-k' string or int as before."""
    for value in ("last-2", 3):
        cfg = TrialConfig.model_validate({"clreg": {"layer": value}})
        assert cfg.clreg.layer == value
        assert cfg.model_dump(mode="json")["clreg"]["layer"] == value
    assert TrialConfig.model_validate({"clreg": {"layer": "last-01"}}).clreg.layer == "last-1"
