"""Target-layer resolution, the exposed-layer forward, CLReg's one-layer rerun, the forward collector, and the
layout-free schedule."""

from __future__ import annotations

import pytest
import torch

from trainables.config import ModelConfig, TinyModelConfig, TrialConfig
from trainables.data.formatting import collate, encode
from trainables.data.schema import Example
from trainables.engine.forward import Batches, ForwardCollector, forward_at_layer, rerun_layer
from trainables.engine.schedule import Layout, epoch_permutation, micro_batch, view_generator
from trainables.model.layers import LayerError, hidden_state_index, mean_pool, resolve_layer
from trainables.model.loading import decoder_parts, load_causal_lm, load_tokenizer, num_layers
from trainables.model.tiny import build_tiny_llama
from trainables.objectives import build_objective, dropout_view

NUM_LAYERS = 3

# --- resolve_layer ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 3, 8, 32])
def test_resolve_layer_mapping(depth: int) -> None:
    assert resolve_layer("last-1", depth) == depth - 1
    assert resolve_layer(f"last-{depth}", depth) == 0
    for k in range(1, depth + 1):
        assert resolve_layer(f"last-{k}", depth) == depth - k
    for j in range(depth):
        assert resolve_layer(j, depth) == j
        assert hidden_state_index(j) == j + 1


@pytest.mark.parametrize("spec", ["last-0", "last-9", "last-100", 8, 9, -1, "top-1", "last-", "last-x", "3", "last--1"])
def test_resolve_layer_errors(spec) -> None:
    with pytest.raises(LayerError) as info:
        resolve_layer(spec, 8)
    assert "last-1..last-8" in str(info.value) and "0..7" in str(info.value) and "8 layers" in str(info.value)
    assert isinstance(info.value, ValueError)


# --- a tiny Llama -------------------------------------------------------------------------------------------------

TEXTS = [
    "Question: Where was Mira Solberg born?\nAnswer: Mira Solberg was born in the coastal town of Bergen.",
    "Question: What does Ravi Anand write?\nAnswer: Ravi Anand writes detective novels set in Mumbai.",
    "The river flows north through the valley and reaches the sea after three hundred miles.",
    "Her first book won a prize for its careful prose and unusual structure.",
] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple:
    cfg = TinyModelConfig(num_layers=NUM_LAYERS, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=300)
    path = build_tiny_llama(cfg, TEXTS, tmp_path_factory.mktemp("tiny") / "m", max_positions=64)
    model = load_causal_lm(str(path), ModelConfig(), trainable=True).eval()
    tok = load_tokenizer(str(path))
    return model, tok


@pytest.fixture(scope="module")
def batch(tiny) -> dict[str, torch.Tensor]:
    """Right-padded batch of two sequences of different lengths."""
    _, tok = tiny
    items = [encode(tok, Example("Where was Mira Solberg born?", "In the coastal town of Bergen, by the sea."), 64),
             encode(tok, Example("What does Ravi write?", "Novels."), 64)]
    b = collate(items, tok.pad_token_id)
    lengths = b["attention_mask"].sum(dim=1)
    assert lengths[0] > lengths[1] and b["attention_mask"][1, -1] == 0  # padding is exercised
    assert b["attention_mask"][:, 0].all()  # right padding
    return b


def test_tiny_model_shape(tiny) -> None:
    model, tok = tiny
    assert num_layers(model) == NUM_LAYERS
    layers, norm = decoder_parts(model)
    assert len(layers) == NUM_LAYERS and norm is not None
    assert tok.pad_token_id is not None and model.config.use_cache is False


@pytest.mark.parametrize("layer", range(NUM_LAYERS))
def test_forward_at_layer_matches_hidden_states(tiny, batch, layer: int) -> None:
    model, _ = tiny
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        fwd = forward_at_layer(model, model, batch, layer)
    assert len(plain.hidden_states) == NUM_LAYERS + 1
    torch.testing.assert_close(fwd.hidden, plain.hidden_states[layer + 1], atol=0, rtol=0)
    torch.testing.assert_close(fwd.logits, plain.logits, atol=0, rtol=0)
    # the captured input of decoder layer `layer` is hidden_states[layer] (the embeddings for layer 0)
    torch.testing.assert_close(fwd.layer_input, plain.hidden_states[layer], atol=0, rtol=0)
    assert "hidden_states" not in fwd.layer_kwargs


@pytest.mark.parametrize("layer", range(NUM_LAYERS))
def test_rerun_layer_reproduces_the_forward(tiny, batch, layer: int) -> None:
    model, _ = tiny
    with torch.no_grad():
        fwd = forward_at_layer(model, model, batch, layer)
        again = rerun_layer(model, layer, fwd.layer_input, fwd.layer_kwargs)
    assert again.shape == fwd.hidden.shape
    torch.testing.assert_close(again, fwd.hidden, atol=1e-5, rtol=0)


def test_last_layer_rerun_applies_the_final_norm(tiny, batch) -> None:
    model, _ = tiny
    last = NUM_LAYERS - 1
    layers, norm = decoder_parts(model)
    with torch.no_grad():
        fwd = forward_at_layer(model, model, batch, last)
        again = rerun_layer(model, last, fwd.layer_input, fwd.layer_kwargs)
        kwargs = dict(fwd.layer_kwargs, past_key_values=None, use_cache=False)
        raw = layers[last](fwd.layer_input, **kwargs)
        raw = raw[0] if isinstance(raw, tuple) else raw
    torch.testing.assert_close(again, norm(raw), atol=1e-6, rtol=0)
    assert not torch.allclose(raw, fwd.hidden, atol=1e-3)  # without the norm it would not match


@pytest.mark.parametrize("layer", range(NUM_LAYERS))
def test_dropout_view_differs_and_trains_the_target_layer(tiny, batch, layer: int) -> None:
    model, _ = tiny
    model.zero_grad(set_to_none=True)
    fwd = forward_at_layer(model, model, batch, layer)
    view = dropout_view(fwd.layer_input, 0.1, torch.Generator().manual_seed(0))
    out = rerun_layer(model, layer, view, fwd.layer_kwargs)
    assert out.shape == fwd.hidden.shape
    assert not torch.allclose(out, fwd.hidden, atol=1e-4)
    # the same generator seed gives the same view
    again = dropout_view(fwd.layer_input, 0.1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, view, atol=0, rtol=0)

    mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
    ((out - fwd.hidden.detach()) * mask).pow(2).sum().backward()
    layers, norm = decoder_parts(model)
    for name, p in layers[layer].named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for layer {layer} {name}"
    for above in range(layer + 1, NUM_LAYERS):  # layers above the target play no part in the view
        assert all(p.grad is None for p in layers[above].parameters())
    # the final norm is part of the view only for the last layer
    assert (norm.weight.grad is not None) == (layer == NUM_LAYERS - 1)
    model.zero_grad(set_to_none=True)


# --- the forward collector -----------------------------------------------------------------------------------------


def _collect(model, batch, clreg: dict, method: str = "graddiff"):
    cfg = TrialConfig.model_validate({"method": {"name": method}, "clreg": clreg})
    needs = build_objective(cfg, NUM_LAYERS).needs
    with torch.no_grad():
        return ForwardCollector(model, model, needs)(Batches(batch, batch, batch), torch.Generator().manual_seed(0))


def test_collector_pools_the_target_layer_and_makes_each_positive_view(tiny, batch) -> None:
    model, _ = tiny
    mask = batch["attention_mask"]
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
    layer = 1  # "last-2" of 3
    pooled = mean_pool(plain.hidden_states[layer + 1], mask)
    # the paraphrase batch is the forget batch here, so its view is the forget representation itself
    para = _collect(model, batch, {"positives": "paraphrase", "symmetric": True, "layer": "last-2"})
    torch.testing.assert_close(para.z_forget, pooled, atol=0, rtol=0)
    torch.testing.assert_close(para.z_forget_pos, pooled, atol=0, rtol=0)
    torch.testing.assert_close(para.forget.logits, plain.logits, atol=0, rtol=0)
    assert para.z_retain_pos is not None and not torch.allclose(para.z_retain_pos, pooled, atol=1e-4)  # dropout
    # a dropout view at p = 0 is the layer rerun on the same input: the same representation
    exact = _collect(model, batch, {"positives": "dropout", "dropout": 0.0, "layer": "last-2"})
    torch.testing.assert_close(exact.z_forget_pos, pooled, atol=1e-5, rtol=0)
    assert exact.z_retain_pos is None


def test_collector_without_clreg_runs_plain_forwards_only(tiny, batch) -> None:
    model, _ = tiny
    out = _collect(model, batch, {"enabled": False}, method="gradascent")
    assert out.retain is None and out.z_forget is None and out.z_forget_pos is None
    assert out.forget.ref_logits is None
    with pytest.raises(ValueError, match="reference"):
        ForwardCollector(model, model, build_objective(TrialConfig.model_validate({"method": {"name": "npo"}}),
                                                       NUM_LAYERS).needs)


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    """A second tiny model with other weights, as the frozen reference (so its outputs are told apart)."""
    cfg = TinyModelConfig(num_layers=NUM_LAYERS, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=300,
                          seed=1)
    path = build_tiny_llama(cfg, TEXTS, tmp_path_factory.mktemp("other") / "m", max_positions=64)
    return load_causal_lm(str(path), ModelConfig(), trainable=False).eval()


def _plain(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)


def test_collector_gives_rmu_its_layer_and_the_frozen_models_retain_outputs(tiny, other_tiny, batch) -> None:
    model, _ = tiny
    retain = {k: v.flip(0) for k, v in batch.items()}  # another batch: the rows in the other order
    cfg = TrialConfig.model_validate({"method": {"name": "rmu", "layer": 0}, "clreg": {"layer": "last-1"}})
    needs = build_objective(cfg, NUM_LAYERS).needs
    assert (needs.method_layer, needs.layer, needs.ref_retain, needs.ref_forget) == (0, NUM_LAYERS - 1, True, False)
    with torch.no_grad():
        out = ForwardCollector(model, model, needs, other_tiny)(Batches(batch, retain),
                                                                torch.Generator().manual_seed(0))
    mine, mine_r, ref_r = _plain(model, batch), _plain(model, retain), _plain(other_tiny, retain)
    torch.testing.assert_close(out.forget.hidden, mine.hidden_states[1], atol=0, rtol=0)  # layer 0's output
    torch.testing.assert_close(out.retain.hidden, mine_r.hidden_states[1], atol=0, rtol=0)
    torch.testing.assert_close(out.retain.ref_hidden, ref_r.hidden_states[1], atol=0, rtol=0)
    assert out.forget.ref_logits is None and out.forget.ref_hidden is None
    torch.testing.assert_close(out.z_forget, mean_pool(mine.hidden_states[-1], batch["attention_mask"]), atol=0,
                               rtol=0)  # CLReg still pools its own layer


def test_collector_runs_dpo_on_the_preferred_answers_with_the_reference(tiny, other_tiny, batch) -> None:
    model, _ = tiny
    preferred = {k: v.flip(0) for k, v in batch.items()}
    needs = build_objective(TrialConfig.model_validate({"method": {"name": "dpo"}, "clreg": {"enabled": False}}),
                            NUM_LAYERS).needs
    assert needs.alternate and needs.ref_forget and needs.method_layer is None
    with torch.no_grad():
        out = ForwardCollector(model, model, needs, other_tiny)(Batches(batch, batch, alternate=preferred),
                                                                torch.Generator().manual_seed(0))
    alt = out.forget.alternate
    torch.testing.assert_close(alt.logits, _plain(model, preferred).logits, atol=0, rtol=0)
    torch.testing.assert_close(alt.ref_logits, _plain(other_tiny, preferred).logits, atol=0, rtol=0)
    torch.testing.assert_close(out.forget.ref_logits, _plain(other_tiny, batch).logits, atol=0, rtol=0)
    assert torch.equal(alt.labels, preferred["labels"]) and out.forget.hidden is None


# --- schedule -------------------------------------------------------------------------------------------------------

COMBOS = [  # (examples, micro batch, accumulation of the multi-worker layout, workers)
    (40, 4, 1, 2),
    (37, 3, 2, 2),
    (10, 2, 3, 2),
    (101, 5, 2, 3),
    (7, 4, 1, 2),
    (3, 2, 2, 2),
]


def _step(layout: Layout, perm: list[int], step: int) -> tuple[list[int], list[list[int]]]:
    """Micro-batch numbers and their examples run at `step`, rank by rank, accumulation step by step."""
    us = [layout.micro_index(step, r, a) for r in range(layout.world_size) for a in range(layout.grad_accum)]
    return us, [micro_batch(perm, u, layout.micro_batch) for u in us]


@pytest.mark.parametrize(("n", "m", "accum", "world"), COMBOS)
def test_multi_worker_step_equals_single_worker_step(n: int, m: int, accum: int, world: int) -> None:
    multi = Layout(m, accum, world)
    single = Layout(m, accum * world, 1)
    assert multi.global_batch == single.global_batch
    assert multi.steps_per_epoch(n) == single.steps_per_epoch(n)
    perm = epoch_permutation(n, seed=3, epoch=1)
    for step in range(multi.steps_per_epoch(n) + 1):
        us_multi, batches_multi = _step(multi, perm, step)
        us_single, batches_single = _step(single, perm, step)
        assert us_multi == us_single
        assert batches_multi == batches_single
        # the view RNG is tied to the micro-batch number, so it is the same in both layouts too
        for u in us_multi:
            assert torch.equal(torch.rand(4, generator=view_generator(3, 1, u)),
                               torch.rand(4, generator=view_generator(3, 1, u)))


@pytest.mark.parametrize(("n", "m", "accum", "world"), COMBOS + [(40, 4, 1, 1), (5, 8, 1, 1)])
def test_an_epoch_covers_every_example_once(n: int, m: int, accum: int, world: int) -> None:
    layout = Layout(m, accum, world)
    g = layout.global_batch
    steps = layout.steps_per_epoch(n)
    perm = epoch_permutation(n, seed=0, epoch=2)
    seen = [i for step in range(steps) for b in _step(layout, perm, step)[1] for i in b]
    assert len(seen) == steps * g
    assert seen[:n] == perm  # every example once, in permutation order
    assert steps == 1 or (steps - 1) * g < n  # every step but the last is made of fresh examples only
    assert seen[n:] == [perm[i % n] for i in range(n, steps * g)]  # the last step is topped up by wrapping around
    if g <= n:
        assert len(seen) - n < g and len(set(seen)) == n  # at most one step's worth of repeats
    else:
        assert steps == 1


def test_epoch_permutation_is_a_seeded_permutation() -> None:
    a = epoch_permutation(50, seed=1, epoch=0)
    assert sorted(a) == list(range(50))
    assert a == epoch_permutation(50, seed=1, epoch=0)
    assert a != epoch_permutation(50, seed=1, epoch=1)
    assert a != epoch_permutation(50, seed=2, epoch=0)
