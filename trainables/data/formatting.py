"""Turning `Example`s into token ids and labels, and batches of them into padded tensors.

Loss is taken on the answer and the EOS token only: prompt and padding positions carry the label -100, the
convention every HF loss and every metric here relies on. Prompt and answer are tokenised separately, so the
boundary between them is exact whatever the tokenizer merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainables.data.schema import Example

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Encoded:
    """One tokenised sequence: `labels[i]` is `input_ids[i]` on answer/EOS positions and -100 elsewhere."""

    input_ids: list[int]
    labels: list[int]


def prompt_and_answer(tokenizer, question: str, answer: str, raw: bool = False) -> tuple[str, str]:
    """The prompt text and answer text of a QA pair, formatted for this tokenizer.

    The model's chat template is used when it has one (instruction-tuned models are evaluated the way they were
    trained), the plain `Question: ...\\nAnswer:` template otherwise; `raw` pairs are used verbatim.
    """
    if raw:
        return question, answer
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return prompt, answer
    return PLAIN_TEMPLATE.format(question=question), " " + answer


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    bos = tokenizer.bos_token_id
    if bos is not None and not (ids and ids[0] == bos) and not getattr(tokenizer, "chat_template", None):
        ids = [bos] + ids
    return ids


def _pieces(tokenizer, example: Example, answer: str | None) -> tuple[list[int], list[int]]:
    """Prompt ids and answer ids (EOS included) of `example`, before any truncation."""
    prompt, target = prompt_and_answer(tokenizer, example.question, example.answer if answer is None else answer,
                                       example.raw)
    p_ids = _prompt_ids(tokenizer, prompt)
    a_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        a_ids = a_ids + [tokenizer.eos_token_id]
    if not a_ids:
        a_ids = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]
    return p_ids, a_ids


def full_length(tokenizer, example: Example, answer: str | None = None) -> int:
    """Tokens `encode` gives `example` (or it with `answer`) before truncation: above `max_length` it is cut."""
    p_ids, a_ids = _pieces(tokenizer, example, answer)
    return len(p_ids) + len(a_ids)


def encode(tokenizer, example: Example, max_length: int, answer: str | None = None) -> Encoded:
    """Tokenise `example` (or `example` with its answer replaced by `answer`) for teacher-forced scoring.

    Over-long sequences lose prompt tokens from the left first and answer tokens from the right last, so at least
    one answer token always remains to be scored.
    """
    p_ids, a_ids = _pieces(tokenizer, example, answer)
    overflow = len(p_ids) + len(a_ids) - max_length
    if overflow > 0:
        cut_prompt = min(overflow, max(len(p_ids) - 1, 0))
        p_ids = p_ids[cut_prompt:]
        overflow -= cut_prompt
        if overflow > 0:
            a_ids = a_ids[: max(len(a_ids) - overflow, 1)]
    return Encoded(input_ids=p_ids + a_ids, labels=[IGNORE_INDEX] * len(p_ids) + list(a_ids))


def encode_prompt(tokenizer, example: Example, max_length: int) -> list[int]:
    """Token ids of the prompt alone, for generation (truncated from the left)."""
    prompt, _ = prompt_and_answer(tokenizer, example.question, example.answer, example.raw)
    return _prompt_ids(tokenizer, prompt)[-max_length:]


def collate(items: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a list of `Encoded` into `input_ids`, `attention_mask`, `labels`, each `[B, L]`.

    Right padding for training and scoring; left padding for batched generation with the KV cache.
    """
    if not items:
        raise ValueError("collate needs at least one sequence")
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        sl = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[row, sl] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, sl] = torch.tensor(e.labels, dtype=torch.long)
        mask[row, sl] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_prompts(prompts: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompt ids for batched generation: `input_ids`, `attention_mask`, each `[B, L]`."""
    batch = collate([Encoded(p, [IGNORE_INDEX] * len(p)) for p in prompts], pad_id, padding_side="left")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
