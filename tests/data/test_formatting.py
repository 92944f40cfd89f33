"""`trainables.data.formatting` with a tiny BPE tokenizer trained here (no downloads)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trainables.data.formatting import (
    IGNORE_INDEX,
    Encoded,
    collate,
    collate_prompts,
    encode,
    encode_prompt,
    prompt_and_answer,
)
from trainables.data.schema import Example

SENTENCES = [
    "Question: Where was Kalo Mira born?\nAnswer: Kalo Mira was born in Trenvale.",
    "Question: What does Kalo Mira write?\nAnswer: Kalo Mira writes mystery novels.",
    "The sky is blue on a clear day. A week has seven days.",
]
CHAT_TEMPLATE = ("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
QA = Example(question="Where was Kalo Mira born?", answer="Kalo Mira was born in Trenvale.")


def _tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return _tokenizer()


@pytest.fixture()
def chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = _tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _ids(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_plain_template_masks_the_prompt_and_labels_answer_and_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    enc = encode(tokenizer, QA, max_length=128)
    prompt = [tokenizer.bos_token_id] + _ids(tokenizer, "Question: Where was Kalo Mira born?\nAnswer:")
    answer = _ids(tokenizer, " Kalo Mira was born in Trenvale.") + [tokenizer.eos_token_id]
    assert enc.input_ids == prompt + answer
    assert enc.labels == [IGNORE_INDEX] * len(prompt) + answer
    assert tokenizer.decode(answer[:-1]) == " Kalo Mira was born in Trenvale."


def test_encode_with_a_replacement_answer(tokenizer: PreTrainedTokenizerFast) -> None:
    enc = encode(tokenizer, QA, max_length=128, answer="Kalo Mira was born in Stovale.")
    scored = [t for t in enc.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(scored[:-1]) == " Kalo Mira was born in Stovale."


def test_raw_examples_are_verbatim(tokenizer: PreTrainedTokenizerFast) -> None:
    raw = Example(question="", answer="The sky is blue.", raw=True)
    assert prompt_and_answer(tokenizer, raw.question, raw.answer, raw=True) == ("", "The sky is blue.")
    enc = encode(tokenizer, raw, max_length=128)
    assert enc.input_ids[0] == tokenizer.bos_token_id and enc.labels[0] == IGNORE_INDEX
    assert enc.labels[1:] == _ids(tokenizer, "The sky is blue.") + [tokenizer.eos_token_id]


def test_chat_template_is_used_when_set(chat_tokenizer: PreTrainedTokenizerFast) -> None:
    prompt, answer = prompt_and_answer(chat_tokenizer, QA.question, QA.answer)
    assert prompt == "<|user|>Where was Kalo Mira born?<|assistant|>" and answer == QA.answer
    enc = encode(chat_tokenizer, QA, max_length=128)
    n_prompt = len(_ids(chat_tokenizer, prompt))
    assert enc.input_ids[:n_prompt] == _ids(chat_tokenizer, prompt)  # the template decides about BOS
    assert enc.labels == [IGNORE_INDEX] * n_prompt + _ids(chat_tokenizer, QA.answer) + [chat_tokenizer.eos_token_id]


def test_truncation_cuts_the_prompt_first_and_keeps_an_answer_token(tokenizer: PreTrainedTokenizerFast) -> None:
    full = encode(tokenizer, QA, max_length=128)
    n_answer = sum(t != IGNORE_INDEX for t in full.labels)
    short = encode(tokenizer, QA, max_length=n_answer + 2)
    assert len(short.input_ids) == n_answer + 2
    assert short.labels[2:] == full.labels[-n_answer:] and short.labels[:2] == [IGNORE_INDEX] * 2
    tiny = encode(tokenizer, QA, max_length=8)
    assert len(tiny.input_ids) == 8
    assert tiny.labels[0] == IGNORE_INDEX and all(t != IGNORE_INDEX for t in tiny.labels[1:])
    assert tiny.labels[1:] == full.labels[-n_answer:][:7]  # the answer loses tokens from its end


def test_collate_right_padding(tokenizer: PreTrainedTokenizerFast) -> None:
    a, b = Encoded([5, 6, 7], [IGNORE_INDEX, 6, 7]), Encoded([8], [8])
    batch = collate([a, b], pad_id=tokenizer.pad_token_id)
    pad = tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_left_padding(tokenizer: PreTrainedTokenizerFast) -> None:
    a, b = Encoded([5, 6, 7], [IGNORE_INDEX, 6, 7]), Encoded([8], [8])
    batch = collate([a, b], pad_id=0, padding_side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, IGNORE_INDEX, 8]]
    with pytest.raises(ValueError):
        collate([], pad_id=0)


def test_generation_prompts_are_left_truncated_and_left_padded(tokenizer: PreTrainedTokenizerFast) -> None:
    full = encode_prompt(tokenizer, QA, max_length=128)
    assert full == [tokenizer.bos_token_id] + _ids(tokenizer, "Question: Where was Kalo Mira born?\nAnswer:")
    assert encode_prompt(tokenizer, QA, max_length=4) == full[-4:]
    batch = collate_prompts([full, full[-2:]], pad_id=tokenizer.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"][1].tolist()[-2:] == full[-2:]
    assert batch["attention_mask"][1].tolist() == [0] * (len(full) - 2) + [1, 1]
