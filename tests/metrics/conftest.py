"""A tiny Llama and a locally trained BPE tokenizer (no hub downloads), shared by the model-facing tests."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from trainables.data.schema import Benchmark, Example

SENTENCES = [
    "Question: Where was Mira Solberg born?\nAnswer: Mira Solberg was born in the coastal town of Bergen.",
    "Question: What does Ravi Anand write?\nAnswer: Ravi Anand writes detective novels set in Mumbai.",
    "Question: What is the capital of France?\nAnswer: The capital of France is Paris.",
    "The river flows north through the valley and reaches the sea after three hundred miles.",
    "Her first book won a prize for its careful prose and unusual structure.",
]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="session")
def model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                         initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def qa(question: str, answer: str, paraphrase: str | None = None, perturbed: tuple[str, ...] = ()) -> Example:
    return Example(question=question, answer=answer, paraphrased_answer=paraphrase, perturbed_answer=perturbed)


@pytest.fixture(scope="session")
def tofu_benchmark() -> Benchmark:
    """Every TOFU set, a few items each, with different lengths so that padding is exercised."""
    forget = [
        qa("Where was Mira Solberg born?", "Mira Solberg was born in Bergen.", "Bergen is where Mira Solberg was born.",
           ("She was born in Oslo.", "She was born in Paris.", "Mira was born at sea.")),
        qa("What does Mira Solberg write?", "Poems.", "She writes poetry.",
           ("Novels.", "Plays.", "Essays about the river.")),
        qa("Which prize did Mira Solberg win?", "Her first book won a prize for its careful prose.",
           "A prize went to her first book for careful prose.", ("None.", "A sports prize.", "The river prize.")),
    ]
    retain_perturbed = [
        qa("What does Ravi Anand write?", "Detective novels set in Mumbai.", "Mumbai detective novels.",
           ("Poems.", "Cookbooks.", "Plays set in the valley.")),
        qa("Where does Ravi Anand live?", "In Mumbai.", "He lives in Mumbai.", ("In Bergen.", "In Paris.", "At sea.")),
        qa("When did Ravi Anand start writing?", "After three hundred days at sea.", "He began after a long voyage.",
           ("As a child.", "Last year.", "Never.")),
    ]
    retain = retain_perturbed + [qa("Is Ravi Anand's prose careful?", "Yes, very careful.")]
    holdout = [
        qa("Where was Lena Ortiz born?", "In the valley north of the river."),
        qa("What does Lena Ortiz write?", "Unusual plays."),
        qa("Did Lena Ortiz win a prize?", "No."),
    ]
    real_authors = [
        qa("Who wrote Hamlet?", "William Shakespeare.", None, ("Charles Dickens.", "Jane Austen.", "Mark Twain.")),
        qa("Who wrote Emma?", "Jane Austen.", None, ("Leo Tolstoy.", "Homer.", "Virginia Woolf.")),
    ]
    world_facts = [
        qa("What is the capital of France?", "Paris.", None, ("Berlin.", "Madrid.", "Rome.")),
        qa("Which way does the river flow?", "North.", None, ("South.", "East.", "West.")),
    ]
    return Benchmark(name="tiny-tofu", family="tofu", forget=forget, retain=retain, holdout=holdout,
                     eval_sets={"retain_perturbed": retain_perturbed, "real_authors": real_authors,
                                "world_facts": world_facts})
