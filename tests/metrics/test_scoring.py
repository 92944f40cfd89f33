"""Model-facing scoring on a tiny random Llama: batching must not change any number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.data.formatting import IGNORE_INDEX, encode
from trainables.data.schema import Example
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


@pytest.mark.parametrize("definitions", ["open-unlearning", "exact"])
def test_token_level_scores_drop_the_trailing_eos(model, tokenizer, tofu_benchmark, definitions):
    ex = tofu_benchmark.forget[0]
    token_logp, vocab, y = one_by_one(model, tokenizer, ex, 64)
    assert y[-1] == tokenizer.eos_token_id
    s = scoring.score_answers(model, tokenizer, [ex], max_length=64, batch_size=1, definitions=definitions)
    np.testing.assert_allclose(s.token_logprobs[0], token_logp[:-1], atol=1e-5)
    np.testing.assert_array_equal(s.labels[0], y[:-1])
    np.testing.assert_array_equal(s.preds[0], vocab[:-1].argmax(-1))
    p = np.exp(vocab[:-1])
    mu = (p * vocab[:-1]).sum(-1)
    np.testing.assert_allclose(s.vocab_mean[0], mu, atol=1e-5)
    np.testing.assert_allclose(s.vocab_std[0], np.sqrt((p * vocab[:-1] ** 2).sum(-1) - mu**2), atol=1e-5)


def test_token_sets_of_a_truncated_and_an_eos_only_answer(model, tokenizer, tofu_benchmark):
    """open-unlearning always drops the last labelled token: a truncated answer's last real token, and the only
    token of an EOS-only answer; exact drops only a trailing EOS and keeps an EOS-only answer's EOS."""
    truncated = tofu_benchmark.forget[2]  # a long answer: 1 prompt token + 5 answer tokens at max_length 6, no EOS
    eos_only = Example(question="The river flows", answer="", raw=True)
    logp_t, _, y_t = one_by_one(model, tokenizer, truncated, 6)
    logp_e, _, y_e = one_by_one(model, tokenizer, eos_only, 6)
    assert len(y_t) == 5 and y_t[-1] != tokenizer.eos_token_id
    assert y_e.tolist() == [tokenizer.eos_token_id]
    ou = scoring.score_answers(model, tokenizer, [truncated, eos_only], max_length=6, batch_size=2)
    exact = scoring.score_answers(model, tokenizer, [truncated, eos_only], max_length=6, batch_size=2,
                                  definitions="exact")
    np.testing.assert_array_equal(ou.labels[0], y_t[:-1])
    np.testing.assert_allclose(ou.token_logprobs[0], logp_t[:-1], atol=1e-5)
    np.testing.assert_array_equal(exact.labels[0], y_t)
    np.testing.assert_allclose(exact.token_logprobs[0], logp_t, atol=1e-5)
    assert ou.labels[1].size == 0 and ou.preds[1].size == 0 and ou.token_logprobs[1].size == 0
    np.testing.assert_array_equal(exact.labels[1], y_e)
    np.testing.assert_allclose(ou.avg_nll, exact.avg_nll)  # sequence-level: every token, under both
    np.testing.assert_allclose(ou.avg_nll, [-logp_t.mean(), -logp_e.mean()], atol=1e-4)


def test_answer_texts_and_rouge_references(tokenizer, tofu_benchmark):
    """The answer as its label tokens decode (EOS skipped, nothing stripped: the zlib text of open-unlearning);
    the ROUGE reference is that text stripped (open-unlearning) or the answer text (exact)."""
    poems, long = tofu_benchmark.forget[1], tofu_benchmark.forget[2]
    assert scoring.answer_texts(tokenizer, [poems], 64) == [" Poems."]  # the plain template's leading space
    truncated = scoring.answer_texts(tokenizer, [long], 6)[0]
    assert truncated == tokenizer.decode(encode(tokenizer, long, 6).labels[1:])
    assert len(truncated) < len(long.answer) and (" " + long.answer).startswith(truncated)
    assert scoring.rouge_references(tokenizer, [poems], 64) == ["Poems."]
    assert scoring.rouge_references(tokenizer, [long], 6) == [truncated.strip()]
    assert scoring.rouge_references(tokenizer, [poems, long], 6, definitions="exact") == [poems.answer, long.answer]


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


def test_generation_stops_at_stop_strings(model, tokenizer, tofu_benchmark):
    """A stop string cuts each answer at its first occurrence (what open-unlearning's MUSE knowmem does) and
    generation of a row may end there; a string the model really produces is taken from an unstopped run."""
    examples = tofu_benchmark.forget
    free = scoring.generate_answers(model, tokenizer, examples, max_new_tokens=12, batch_size=3, max_length=64)
    stop = next(free[0][i:i + 2] for i in range(2, len(free[0]) - 1) if not free[0][i:i + 2].isspace()
                and free[0][i:i + 2] == free[0][i:i + 2].strip())
    cut = scoring.generate_answers(model, tokenizer, examples, max_new_tokens=12, batch_size=3, max_length=64,
                                   stop_strings=(stop,))
    assert cut == [scoring.cut_at_stop_strings(t, (stop,)) for t in free]
    assert len(cut[0]) < len(free[0]) and stop not in cut[0]
    assert scoring.cut_at_stop_strings("a b\n\nQuestion: c", ("\n\n", "\nQuestion", "Question:")) == "a b"
    assert scoring.cut_at_stop_strings(" Paris.\nQuestion: x", ("\n\n", "\nQuestion", "Question:")) == "Paris."


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
