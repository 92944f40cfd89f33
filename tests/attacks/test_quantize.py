"""Round-to-nearest group-wise quantization: the grid's guarantees per group, and which tensors of a model it
touches."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trainables.attacks.quantize import quantize_model_, quantize_rtn


def _groups(w: torch.Tensor, group_size: int) -> list[torch.Tensor]:
    """The groups of consecutive elements along the last dimension (the last one may be shorter)."""
    return [g for row in w.reshape(-1, w.shape[-1]) for g in row.split(group_size)]


def _tiny_llama() -> LlamaForCausalLM:
    """2 decoder layers with tied embeddings, as the tiny-llama preset has."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_every_element_moves_at_most_half_a_step_within_at_most_2_to_the_bits_values(bits):
    torch.manual_seed(1)
    w = torch.randn(5, 70) * 3  # 70 = 2 full groups of 32 and one of 6 (padded)
    q = quantize_rtn(w, bits, group_size=32)
    assert q.shape == w.shape and q.dtype == w.dtype
    for orig, quant in zip(_groups(w, 32), _groups(q, 32)):
        step = (orig.max() - orig.min()) / (2**bits - 1)
        assert (orig - quant).abs().max() <= step / 2 + 1e-6
        assert quant.unique().numel() <= 2**bits
        assert quant.min() == pytest.approx(orig.min().item(), abs=1e-6)  # the grid spans [min, max] exactly
        assert quant.max() == pytest.approx(orig.max().item(), abs=1e-6)


def test_hand_computed_two_bit_group():
    # min 0, max 3, 2 bits: grid {0, 1, 2, 3}; 1.4 -> 1, 1.6 -> 2.
    w = torch.tensor([[0.0, 1.4, 1.6, 3.0]])
    assert quantize_rtn(w, 2, 4).tolist() == [[0.0, 1.0, 2.0, 3.0]]


def test_a_constant_group_stays_exact():
    w = torch.tensor([[0.1234567] * 4 + [-1.0, 2.0, 0.3, 0.7]])
    q = quantize_rtn(w, 4, group_size=4)
    assert torch.equal(q[0, :4], w[0, :4])
    assert not torch.equal(q[0, 4:], w[0, 4:])


def test_bf16_weights_come_back_in_bf16_on_the_grid():
    torch.manual_seed(2)
    w = torch.randn(4, 64).to(torch.bfloat16)
    q = quantize_rtn(w, 4, 64)
    assert q.dtype == torch.bfloat16
    assert all(g.unique().numel() <= 16 for g in _groups(q, 64))


def test_sixteen_bits_leaves_the_model_bit_identical():
    model = _tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert quantize_model_(model, 16, 8) == 0
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_model_quantization_touches_the_decoder_projections_only():
    model = _tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 2 layers x (q, k, v, o, gate, up, down); the tied LM head (= the embedding matrix) is not quantized.
    assert quantize_model_(model, 4, 16) == 14
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.endswith("proj.weight")} and len(changed) == 14
    w = model.model.layers[0].mlp.down_proj.weight
    assert all(g.unique().numel() <= 16 for g in _groups(w, 16))
