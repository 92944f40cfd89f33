"""The model-facing half of evaluation: batched forward passes and generation, returning plain numpy numbers.

Every function runs the model in eval mode under `torch.no_grad()` (restoring the caller's train/eval mode after),
in batches of `batch_size`, on the model's device, and works the same for a plain HF causal LM and a peft-wrapped
one. Scoring uses right padding (`collate`): with a causal mask the scores of a sequence do not depend on what it is
batched with. Generation uses left padding (`collate_prompts`) so that every row continues from its last prompt
token with the KV cache. The metric math over these numbers lives in `tofu.py`, `mia.py` and `representation.py`.
Where `eval.definitions` changes what is scored (which tokens the token-level statistics cover, which text is the
reference), the function takes a keyword `definitions`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainables.data.formatting import IGNORE_INDEX, Encoded, collate, collate_prompts, encode, encode_prompt
from trainables.data.schema import Example
from trainables.metrics.definitions import EXACT, OPEN_UNLEARNING, check
from trainables.metrics.mia import VARIANCE_FLOOR
from trainables.model.layers import hidden_state_index, mean_pool


@dataclass(frozen=True)
class ItemScores:
    """Teacher-forced scores of N answers.

    Sequence-level fields cover every answer token, EOS included (TOFU's Probability), under both definitions.
    Token-level fields (min-k, min-k++, ES, EM) leave out the end of the answer, because whether the model predicts
    the end says nothing about whether it memorised the answer; the definitions differ in how:

    - open-unlearning: the last labelled token is always dropped, as its `tokenwise_logprobs` does, also when it is
      not EOS (an answer truncated by `max_length`, whose last kept token is then a real one). An answer that was
      only EOS has no tokens left (min-k 0, ES 0, EM None).
    - exact: a trailing EOS is dropped; a truncated answer keeps all its tokens, and an answer that is only EOS
      keeps it, so every item has at least one token.

    Attributes:
        avg_nll: `[N]` mean answer-token NLL.
        sum_nll: `[N]` summed answer-token NLL.
        n_tokens: `[N]` number of answer tokens.
        token_logprobs: N arrays `[T_i]`, log p(x_t) of each answer token.
        vocab_mean: N arrays `[T_i]`, `mu_t = sum_v p_v log p_v` at each answer position (min-k++).
        vocab_std: N arrays `[T_i]`, `sigma_t = sqrt(sum_v p_v (log p_v)^2 - mu_t^2)`, variance floored at 1e-6.
        preds: N arrays `[T_i]`, teacher-forced argmax token ids.
        labels: N arrays `[T_i]`, the true answer token ids.
    """

    avg_nll: np.ndarray
    sum_nll: np.ndarray
    n_tokens: np.ndarray
    token_logprobs: list[np.ndarray]
    vocab_mean: list[np.ndarray]
    vocab_std: list[np.ndarray]
    preds: list[np.ndarray]
    labels: list[np.ndarray]


@contextmanager
def _inference(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def _score_batch(model, batch: dict[str, torch.Tensor]) -> dict[str, list[np.ndarray]]:
    """Per-row answer-token statistics of one right-padded batch.

    Log-softmax runs in fp32 on the answer positions only (`[T, V]`, T = answer tokens in the batch), never on the
    whole `[B, L, V]`.
    """
    device = _device(model)
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                   use_cache=False).logits
    labels = batch["labels"][:, 1:].to(device)
    mask = labels != IGNORE_INDEX
    logp = logits[:, :-1][mask].float().log_softmax(dim=-1)
    target = labels[mask]
    token = logp.gather(1, target[:, None]).squeeze(1)
    p = logp.exp()
    mu = torch.where(p > 0, p * logp, 0.0).sum(dim=-1)
    second = torch.where(p > 0, p * logp.square(), 0.0).sum(dim=-1)
    std = (second - mu.square()).clamp_min(VARIANCE_FLOOR).sqrt()
    counts = mask.sum(dim=1).tolist()
    columns = {"token": token, "mu": mu, "std": std, "pred": logp.argmax(dim=-1), "label": target}
    return {k: [t.cpu().numpy() for t in v.split(counts)] for k, v in columns.items()}


def _token_level(array: np.ndarray, labels: np.ndarray, eos_id: int | None, definitions: str) -> np.ndarray:
    """The positions of one answer that the token-level statistics cover (`ItemScores`)."""
    if definitions == OPEN_UNLEARNING:
        return array[:-1]
    return array[:-1] if len(labels) > 1 and labels[-1] == eos_id else array


def score_answers(model, tokenizer, examples: Sequence[Example], max_length: int, batch_size: int,
                  answers: Sequence[str] | None = None, *, definitions: str = OPEN_UNLEARNING) -> ItemScores:
    """Teacher-forced scores of each example's answer (or of `answers[i]` in its place).

    Args:
        model: HF causal LM (optionally peft-wrapped).
        tokenizer: its tokenizer.
        examples: N examples; their prompts are formatted by `trainables.data.formatting.encode`.
        max_length: tokens per sequence (longer ones are truncated as `encode` does).
        batch_size: sequences per forward pass.
        answers: N replacement answers (paraphrased or perturbed ones), or None to score `example.answer`.
        definitions: which answer tokens the token-level fields cover (`ItemScores`).

    Returns:
        `ItemScores` of the N items, in order.
    """
    check(definitions)
    if answers is not None and len(answers) != len(examples):
        raise ValueError(f"{len(answers)} answers for {len(examples)} examples")
    encoded = [encode(tokenizer, ex, max_length, None if answers is None else answers[i])
               for i, ex in enumerate(examples)]
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("token", "mu", "std", "pred", "label")}
    with _inference(model):
        for chunk in _batches(encoded, batch_size):
            for key, values in _score_batch(model, collate(chunk, _pad_id(tokenizer))).items():
                rows[key].extend(values)
    sum_nll = np.array([-t.astype(np.float64).sum() for t in rows["token"]])
    n_tokens = np.array([len(t) for t in rows["token"]], dtype=np.int64)
    eos, labels = tokenizer.eos_token_id, rows["label"]

    def trimmed(key: str, dtype: type) -> list[np.ndarray]:
        return [_token_level(v, y, eos, definitions).astype(dtype) for v, y in zip(rows[key], labels)]

    return ItemScores(avg_nll=sum_nll / n_tokens, sum_nll=sum_nll, n_tokens=n_tokens,
                      token_logprobs=trimmed("token", np.float64), vocab_mean=trimmed("mu", np.float64),
                      vocab_std=trimmed("std", np.float64), preds=trimmed("pred", np.int64),
                      labels=trimmed("label", np.int64))


def score_alternatives(model, tokenizer, examples: Sequence[Example], which: str, max_length: int,
                       batch_size: int) -> np.ndarray:
    """Average answer-token NLL of the alternative answers the truth ratio compares.

    Args:
        which: "paraphrased": each example's `paraphrased_answer`, or its `answer` where it has none (the
            correct answer of the forget / retain truth ratio; real authors and world facts use `answer` itself);
            "perturbed": every `perturbed_answer`, all of them scored in one batched pass over the flattened list
            and regrouped per example.

    Returns:
        "paraphrased": `[N]`. "perturbed": `[N, K]` with K the largest number of perturbed answers of an example;
        rows of examples with fewer are NaN-padded (all-NaN for an example without any).
    """
    if which == "paraphrased":
        answers = [ex.paraphrased_answer or ex.answer for ex in examples]
        return score_answers(model, tokenizer, examples, max_length, batch_size, answers).avg_nll
    if which != "perturbed":
        raise ValueError(f"which must be 'paraphrased' or 'perturbed', got {which!r}")
    owners = [(i, j) for i, ex in enumerate(examples) for j in range(len(ex.perturbed_answer))]
    width = max((len(ex.perturbed_answer) for ex in examples), default=0)
    grouped = np.full((len(examples), width), np.nan)
    if owners:
        flat = score_answers(model, tokenizer, [examples[i] for i, _ in owners], max_length, batch_size,
                             [examples[i].perturbed_answer[j] for i, j in owners])
        rows, cols = zip(*owners)
        grouped[list(rows), list(cols)] = flat.avg_nll
    return grouped


def answer_texts(tokenizer, examples: Sequence[Example], max_length: int) -> list[str]:
    """Each answer as the model saw it: its label tokens under `encode` decoded, special tokens (EOS) skipped.

    A truncated answer is the truncated text; nothing is stripped (open-unlearning's zlib attack compresses exactly
    this text, and its ROUGE reference is this text stripped).
    """
    texts = []
    for ex in examples:
        labels = encode(tokenizer, ex, max_length).labels
        texts.append(tokenizer.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True))
    return texts


def rouge_references(tokenizer, examples: Sequence[Example], max_length: int, *,
                     definitions: str = OPEN_UNLEARNING) -> list[str]:
    """The texts greedy generations are scored against by ROUGE.

    - open-unlearning: the answer's label tokens decoded and stripped (`answer_texts`), as its
      `eval_text_similarity` does; an answer that `max_length` truncates is compared as the truncated text.
    - exact: `example.answer`, the full answer text.
    """
    if check(definitions) == EXACT:
        return [ex.answer for ex in examples]
    return [t.strip() for t in answer_texts(tokenizer, examples, max_length)]


def cut_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the first occurrence of each stop string in turn, stripped (open-unlearning's cut, in order)."""
    for stop in stop_strings:
        if stop:
            text = text.split(stop)[0]
    return text.strip()


def generate_answers(model, tokenizer, examples: Sequence[Example], max_new_tokens: int, batch_size: int,
                     max_length: int, stop_strings: Sequence[str] = ()) -> list[str]:
    """Greedy answers to each example's prompt, batched with left padding and the KV cache.

    Generation stops at the tokenizer's EOS, after `max_new_tokens`, or once a row has produced one of
    `stop_strings` (transformers' `stop_strings`; rows stop independently). Only the new tokens are decoded (special
    tokens, hence EOS and padding, skipped), the text is cut at the first stop string (`cut_at_stop_strings`) and
    surrounding whitespace is stripped, as open-unlearning does before ROUGE. A greedy continuation does not depend
    on where generation stops, so stopping early changes no text, only the time.

    Returns:
        N strings, in order.
    """
    prompts = [encode_prompt(tokenizer, ex, max_length) for ex in examples]
    pad_id = _pad_id(tokenizer)
    stops = [s for s in stop_strings if s]
    extra = {"stop_strings": stops, "tokenizer": tokenizer} if stops else {}
    texts: list[str] = []
    with _inference(model):
        for chunk in _batches(prompts, batch_size):
            batch = {k: v.to(_device(model)) for k, v in collate_prompts(chunk, pad_id).items()}
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, **extra)
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            texts.extend(cut_at_stop_strings(t, stops)
                         for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts


def representations(model, tokenizer, examples: Sequence[Example], layers: Sequence[int], max_length: int,
                    batch_size: int) -> dict[int, np.ndarray]:
    """L2-normalised mean-pooled representations of the full prompt + answer sequences, as CLReg shapes them.

    Layer `j` is decoder layer j's output, `hidden_states[j + 1]` (`trainables.model.layers`), so the top layer
    is after the final norm, exactly the tensor the CLReg loss sees.

    Args:
        layers: 0-based decoder layer indices.

    Returns:
        layer -> `[N, D]` float64 array of unit rows.

    Raises:
        ValueError: when a layer is not in `0..num_layers-1`.
    """
    encoded: list[Encoded] = [encode(tokenizer, ex, max_length) for ex in examples]
    pooled: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    with _inference(model):
        for chunk in _batches(encoded, batch_size):
            batch = collate(chunk, _pad_id(tokenizer))
            mask = batch["attention_mask"].to(_device(model))
            hidden = model(input_ids=batch["input_ids"].to(_device(model)), attention_mask=mask,
                           output_hidden_states=True, use_cache=False).hidden_states
            for layer in layers:
                if not 0 <= layer < len(hidden) - 1:
                    raise ValueError(f"layer {layer} is not in 0..{len(hidden) - 2}")
                z = F.normalize(mean_pool(hidden[hidden_state_index(layer)].float(), mask), dim=-1)
                pooled[layer].append(z.cpu().numpy().astype(np.float64))
    width = model.config.hidden_size
    return {layer: np.concatenate(parts) if parts else np.zeros((0, width)) for layer, parts in pooled.items()}
