"""The `tiny-llama` preset: a small Llama built from a config, with a tokenizer trained on the benchmark text.

Nothing is downloaded: the BPE tokenizer is trained with `tokenizers` on the benchmark's own text and saved
beside randomly initialised weights, so the quickstart and the tests run offline on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from trainables.config import TinyModelConfig
from trainables.data.schema import Benchmark

TINY_PRESET = "tiny-llama"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def tokenizer_texts(bench: Benchmark) -> list[str]:
    """Every string of `bench` the tiny tokenizer is trained on; `prepare` and the preflight truncation count both
    train on exactly these, so they get the same tokenizer."""
    return [t for e in bench.forget + bench.retain + bench.holdout + bench.extra_train
            + [x for s in bench.eval_sets.values() for x in s]
            for t in (e.question, e.answer, e.paraphrased_answer or "", *e.perturbed_answer)]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a `PreTrainedTokenizerFast`.

    Byte-level pre-tokenisation means any text encodes (no unknown tokens), and training is deterministic for the
    same texts, so the same benchmark gives the same tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )


def tiny_llama_config(cfg: TinyModelConfig, vocab_size: int, **special):
    """The LlamaConfig of the `tiny-llama` shape: what `build_tiny_llama` builds and preflight checks LoRA targets
    against (on the meta device)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=cfg.num_heads, tie_word_embeddings=True, use_cache=False, **special)


def build_tiny_llama(cfg: TinyModelConfig, texts: Iterable[str], out_dir: Path, max_positions: int) -> Path:
    """Write a randomly initialised tiny Llama and its tokenizer to `out_dir` (safetensors) and return it."""
    from transformers import LlamaForCausalLM

    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    config = tiny_llama_config(cfg, len(tokenizer), max_position_embeddings=max_positions,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
