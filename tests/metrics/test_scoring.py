"""Model-facing scoring on a tiny random Llama: batching must not change any number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.data.formatting import IGNORE_INDEX, encode
from trainables.metrics import scoring
from trainables.model.layers import hidden_state_index


def one_by_one(model, tokenizer, example, max_length, answer=None):
    """Unbatched reference: answer-token log-probs, vocab log-probs and labels of one sequence."""
    enc = encode(tokenizer, example, max_length, answer)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, :-1].double()
    labels = torch.tensor(enc.labels[1:])
    keep = labels != IGNORE_INDEX
    vocab = logits[keep].log_softmax(-1).numpy()
    y = labels[keep].numpy()
    return vocab[np.arange(len(y)), y], vocab, y


def test_avg_nll_is_padding_invariant(model, tokenizer, tofu_benchmark):
    examples = tofu_benchmark.forget + tofu_benchmark.retain + tofu_benchmark.holdout
    batched = scoring.score_answers(model, tokenizer, examples, max_length=64, batch_size=4)
    for i, ex in enumerate(examples):
        token_logp, _, _ = one_by_one(model, tokenizer, ex, 64)
        assert batched.avg_nll[i] == pytest.approx(-token_logp.mean(), abs=1e-4)
        assert batched.sum_nll[i] == pytest.approx(-token_logp.sum(), abs=1e-3)
        assert batched.n_tokens[i] == len(token_logp)


def test_token_level_scores_drop_the_trailing_eos(model, tokenizer, tofu_benchmark):
    ex = tofu_benchmark.forget[0]
    token_logp, vocab, y = one_by_one(model, tokenizer, ex, 64)
    assert y[-1] == tokenizer.eos_token_id
    s = scoring.score_answers(model, tokenizer, [ex], max_length=64, batch_size=1)
    np.testing.assert_allclose(s.token_logprobs[0], token_logp[:-1], atol=1e-5)
    np.testing.assert_array_equal(s.labels[0], y[:-1])
    np.testing.assert_array_equal(s.preds[0], vocab[:-1].argmax(-1))
    p = np.exp(vocab[:-1])
    mu = (p * vocab[:-1]).sum(-1)
    np.testing.assert_allclose(s.vocab_mean[0], mu, atol=1e-5)
    np.testing.assert_allclose(s.vocab_std[0], np.sqrt((p * vocab[:-1] ** 2).sum(-1) - mu**2), atol=1e-5)


def test_alternatives_are_regrouped_per_example(model, tokenizer, tofu_benchmark):
    examples = tofu_benchmark.forget + tofu_benchmark.holdout[:1]  # the last one has no alternatives
    perturbed = scoring.score_alternatives(model, tokenizer, examples, "perturbed", 64, batch_size=4)
    assert perturbed.shape == (4, 3)
    assert np.isnan(perturbed[3]).all()
    for i, ex in enumerate(examples[:3]):
        for j, answer in enumerate(ex.perturbed_answer):
            token_logp, _, _ = one_by_one(model, tokenizer, ex, 64, answer)
            assert perturbed[i, j] == pytest.approx(-token_logp.mean(), abs=1e-4)
    para = scoring.score_alternatives(model, tokenizer, examples, "paraphrased", 64, batch_size=4)
    paraphrase = one_by_one(model, tokenizer, examples[0], 64, examples[0].paraphrased_answer)[0]
    assert para[0] == pytest.approx(-paraphrase.mean(), abs=1e-4)
    assert para[3] == pytest.approx(-one_by_one(model, tokenizer, examples[3], 64)[0].mean(), abs=1e-4)


def test_batched_generation_equals_one_by_one(model, tokenizer, tofu_benchmark):
    examples = tofu_benchmark.forget + tofu_benchmark.holdout
    batched = scoring.generate_answers(model, tokenizer, examples, max_new_tokens=8, batch_size=6, max_length=64)
    single = [scoring.generate_answers(model, tokenizer, [ex], max_new_tokens=8, batch_size=1, max_length=64)[0]
              for ex in examples]
    assert batched == single
    assert all(isinstance(t, str) for t in batched)


def test_representations_shape_norm_and_layer_convention(model, tokenizer, tofu_benchmark):
    examples = tofu_benchmark.forget
    reps = scoring.representations(model, tokenizer, examples, layers=[0, 1], max_length=64, batch_size=2)
    assert set(reps) == {0, 1}
    for z in reps.values():
        assert z.shape == (len(examples), model.config.hidden_size)
        np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    enc = encode(tokenizer, examples[1], 64)
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([enc.input_ids]), output_hidden_states=True).hidden_states
    top = hidden[hidden_state_index(1)][0].mean(0)
    assert hidden_state_index(1) == len(hidden) - 1
    np.testing.assert_allclose(reps[1][1], (top / top.norm()).numpy(), atol=1e-5)


def test_scoring_restores_train_mode(model, tokenizer, tofu_benchmark):
    model.train()
    try:
        scoring.score_answers(model, tokenizer, tofu_benchmark.forget[:1], 64, 1)
        assert model.training
    finally:
        model.eval()
