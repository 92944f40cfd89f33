"""The unlearning recipe's own training path on a real single-process DeepSpeed engine (CPU, gloo), without Ray:
paraphrase positives and the symmetric CLReg variant, RMU (its layer, its trained parameters) and DPO (its preferred
answers) go through `UnlearnEpochs` (batches, forward collector, objective, backward, optimizer step) as in a
trial."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.config import ModelConfig, TinyModelConfig, TrialConfig
from trainables.data.formatting import encode
from trainables.data.idk import answer_for_row, idk_answers
from trainables.data.schema import Example
from trainables.engine.forward import ForwardCollector
from trainables.engine.job import WorkerPlace
from trainables.engine.recipes.unlearn import UnlearnData, UnlearnEpochs
from trainables.engine.schedule import Layout, epoch_permutation, view_generator
from trainables.engine.training import build_engine
from trainables.model.loading import load_causal_lm, load_tokenizer, num_layers
from trainables.model.tiny import build_tiny_llama
from trainables.model.trainable import train_only
from trainables.objectives import build_objective
from trainables.report_keys import loss_metric

FORGET = [Example("Where was Mira Solberg born?", "In the coastal town of Bergen.",
                  paraphrased_answer="Bergen, by the sea."),
          Example("What does Ravi Anand write?", "Detective novels set in Mumbai.",
                  paraphrased_answer="Crime fiction about Mumbai."),
          Example("When did Ana Ruiz publish?", "Her first book came out in 1998.",
                  paraphrased_answer="In 1998, her debut.")]
RETAIN = [Example("What river flows north?", "The river through the valley."),
          Example("Which prize did her book win?", "A prize for careful prose."),
          Example("How long is the river?", "About three hundred miles.")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = [f"{e.question} {e.answer} {e.paraphrased_answer or ''}" for e in FORGET + RETAIN] * 3
    cfg = TinyModelConfig(num_layers=3, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=300)
    path = build_tiny_llama(cfg, texts, tmp_path_factory.mktemp("tiny") / "m", max_positions=64)
    return str(path), load_tokenizer(str(path))


def test_paraphrase_positives_and_symmetric_clreg_train_through_the_recipe(tiny, single_process_group):
    path, tok = tiny
    cfg = TrialConfig.model_validate({
        "method": {"name": "graddiff"},
        "clreg": {"positives": "paraphrase", "symmetric": True, "layer": "last-2", "lambda": 0.5},
        "train": {"micro_batch_size": 2, "grad_accum": 1, "lr": 1e-2, "epochs": 1},
    })
    data = UnlearnData(forget=[encode(tok, e, 48) for e in FORGET], retain=[encode(tok, e, 48) for e in RETAIN],
                       paraphrase=[encode(tok, e, 48, answer=e.paraphrased_answer) for e in FORGET])
    torch.manual_seed(0)
    model = load_causal_lm(path, ModelConfig(), trainable=True)
    objective = build_objective(cfg, num_layers(model))
    layout = Layout(2, 1, 1)
    engine = build_engine(model, cfg, 1, cfg.train.lr, 2, total_steps=4)
    epochs = UnlearnEpochs(cfg, WorkerPlace(0, 1, torch.device("cpu")), engine, objective,
                           ForwardCollector(engine, engine.module, objective.needs), data, layout, tok.pad_token_id)

    before = [p.detach().clone() for p in engine.module.parameters()]
    perm_f, perm_r = epoch_permutation(3, 0, 0), epoch_permutation(3, 1, 0)
    batches = epochs.batches(perm_f, perm_r, 0)
    assert batches.paraphrase is not None and batches.retain is not None
    terms = epochs.micro_step(batches, view_generator(0, 0, 0), epoch=0, step=0)
    assert terms.clreg is not None and math.isfinite(terms.clreg.item()) and terms.clreg.item() > 0
    assert terms.total.item() == pytest.approx(
        (terms.forget + terms.retain + 0.5 * terms.clreg).item(), rel=1e-5)  # graddiff's gamma = alpha = 1
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, engine.module.parameters()))

    metrics = epochs.train_epoch(1)
    assert metrics["epoch"] == 2 and math.isfinite(metrics[loss_metric("clreg")])
    assert {loss_metric(t) for t in ("loss", "forget", "retain", "clreg")} <= set(metrics)


def _epochs(path, tok, cfg: TrialConfig, data: UnlearnData, ref=None) -> UnlearnEpochs:
    torch.manual_seed(0)
    model = load_causal_lm(path, ModelConfig(), trainable=True)
    objective = build_objective(cfg, num_layers(model))
    train_only(model, objective.method.trainable)
    engine = build_engine(model, cfg, 1, cfg.train.lr, 2, total_steps=4)
    return UnlearnEpochs(cfg, WorkerPlace(0, 1, torch.device("cpu")), engine, objective,
                         ForwardCollector(engine, engine.module, objective.needs, ref), data, Layout(2, 1, 1),
                         tok.pad_token_id)


def test_rmu_with_clreg_trains_only_its_pattern_and_starts_at_the_frozen_layer(tiny, single_process_group):
    """RMU at layer 0 training only that layer's MLP down-projection, plus CLReg at last-1: the embed_diff retain
    term is 0 before the first step (the model is the frozen one), the total is gamma * L_f + alpha * L_r +
    lambda * L_CL, and one step changes the named weight and nothing else."""
    path, tok = tiny
    pattern = r"model\.layers\.0\.mlp\.down_proj\.weight"
    cfg = TrialConfig.model_validate({
        "method": {"name": "rmu", "layer": 0, "trainable": pattern, "steering_coeff": 4.0},
        "clreg": {"layer": "last-1", "lambda": 0.5},
        "train": {"micro_batch_size": 2, "grad_accum": 1, "lr": 1e-2, "epochs": 1},
    })
    data = UnlearnData(forget=[encode(tok, e, 48) for e in FORGET], retain=[encode(tok, e, 48) for e in RETAIN])
    ref = load_causal_lm(path, ModelConfig(), trainable=False).eval().requires_grad_(False)
    epochs = _epochs(path, tok, cfg, data, ref)
    module = epochs.engine.module
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["model.layers.0.mlp.down_proj.weight"]
    before = {n: p.detach().clone() for n, p in module.named_parameters()}

    terms = epochs.micro_step(epochs.batches(epoch_permutation(3, 0, 0), epoch_permutation(3, 1, 0), 0),
                              view_generator(0, 0, 0), epoch=0, step=0)
    assert terms.retain.item() == 0.0 and terms.forget.item() > 0
    assert terms.total.item() == pytest.approx((terms.forget + terms.retain + 0.5 * terms.clreg).item(), rel=1e-6)
    changed = [n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed == ["model.layers.0.mlp.down_proj.weight"]
    metrics = epochs.train_epoch(1)
    assert metrics[loss_metric("retain")] > 0 and math.isfinite(metrics[loss_metric("clreg")])


def test_dpo_prefers_the_refusal_through_the_recipe(tiny, single_process_group):
    """IdkDPO on the built-in answers: before the first step the model is the reference, so both log ratios are 0
    and the forget loss is (2 / beta) log 2; one step lowers it on the same batch."""
    path, tok = tiny
    cfg = TrialConfig.model_validate({
        "method": {"name": "dpo"}, "clreg": {"enabled": False},
        "train": {"micro_batch_size": 2, "grad_accum": 1, "lr": 1e-3, "epochs": 1},
    })
    answers = idk_answers(None)
    data = UnlearnData(forget=[encode(tok, e, 48) for e in FORGET], retain=[encode(tok, e, 48) for e in RETAIN],
                       alternate=[encode(tok, e, 48, answer=answer_for_row(answers, i)) for i, e in enumerate(FORGET)])
    ref = load_causal_lm(path, ModelConfig(), trainable=False).eval().requires_grad_(False)
    epochs = _epochs(path, tok, cfg, data, ref)
    perm_f, perm_r = epoch_permutation(3, 0, 0), epoch_permutation(3, 1, 0)
    batches = epochs.batches(perm_f, perm_r, 0)
    assert batches.alternate is not None and not torch.equal(batches.alternate["labels"], batches.forget["labels"])
    first = epochs.micro_step(batches, view_generator(0, 0, 0), epoch=0, step=0)
    assert first.forget.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)
    again = epochs.micro_step(epochs.batches(perm_f, perm_r, 0), view_generator(0, 0, 0), epoch=0, step=1)
    assert again.forget.item() < first.forget.item()
