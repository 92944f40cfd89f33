"""Counting the rows `data.max_length` truncates, on hand-made data with a tokenizer whose lengths are countable."""

from __future__ import annotations

import pytest

from trainables.data.formatting import encode, full_length
from trainables.data.optional_sets import OPTIONAL_SETS, absent_sets
from trainables.data.schema import Benchmark, Example
from trainables.data.truncation import TruncationError, check_truncation, fitting_length, split_lengths
from trainables.metrics.registry import DEFAULTS
from trainables.model.loading import load_tokenizer
from trainables.model.tiny import tokenizer_texts, train_tokenizer


@pytest.fixture(scope="module")
def words():
    """One token per whitespace-separated word (unknown words too), with BOS and EOS: lengths count by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def _qa(question_words: int, answer_words: int, *wrong_words: int, paraphrase_words: int | None = None) -> Example:
    """`Question: q1 .. qN\\nAnswer:` is N + 2 words, + BOS; the answer is M words + EOS: N + M + 4 tokens."""
    def text(n: int, w: str) -> str:
        return " ".join(f"{w}{i}" for i in range(n))

    return Example(question=text(question_words, "q"), answer=text(answer_words, "a"),
                   paraphrased_answer=None if paraphrase_words is None else text(paraphrase_words, "p"),
                   perturbed_answer=tuple(text(n, "w") for n in wrong_words))


def test_full_length_counts_what_encode_builds_before_truncating(words) -> None:
    ex = _qa(3, 5)
    assert full_length(words, ex) == 3 + 5 + 4 == len(encode(words, ex, max_length=1000).input_ids)
    assert full_length(words, ex, answer="one two") == 3 + 2 + 4
    assert len(encode(words, ex, max_length=10).input_ids) == 10  # 12 tokens, so encode cuts 2


def test_rows_count_as_truncated_by_any_scored_answer(words) -> None:
    # forget lengths: answer 10, 12, 14; with perturbed / paraphrased answers the longest are 20, 12, 14
    forget = [_qa(2, 4, 14, paraphrase_words=6), _qa(2, 6), _qa(2, 8, 3)]
    retain = [_qa(1, n) for n in (1, 2, 3, 20)]  # 6, 7, 8, 25
    bench = Benchmark(name="hand", family="tofu", forget=forget, retain=retain,
                      eval_sets={"world_facts": [_qa(1, 1, 2)]})
    by_name = {s.split: s for s in split_lengths(words, bench)}
    assert list(by_name) == ["forget", "retain", "world_facts"]  # empty holdout left out
    f = by_name["forget"]
    assert (f.answer, f.scored, f.alternatives) == ((10, 12, 14), (20, 12, 14), True)
    assert (f.truncated_answers(12), f.truncated(12)) == (1, 2)
    assert f.describe(12) == ("forget: 1 of 3 rows (33.3%), 2 (66.7%) with paraphrased/perturbed answers; "
                              "longest 20 tokens")
    assert by_name["retain"].describe(7) == "retain: 2 of 4 rows (50.0%); longest 25 tokens"


def test_fitting_length_allows_the_share_of_longest_rows() -> None:
    lengths = [5, 6, 7, 8, 20]
    assert fitting_length(lengths, 0.0) == 20
    assert fitting_length(lengths, 0.2) == 8  # one of five (20) may be cut
    assert fitting_length(lengths, 0.4) == 7
    assert fitting_length([9, 9, 9, 30], 0.5) == 9


def _bench(words_per_answer: list[int], family: str = "tofu") -> Benchmark:
    rows = [Example(question="", answer=" ".join(["x"] * n), raw=True) for n in words_per_answer]  # n + 2 tokens
    return Benchmark(name="hand", family=family, forget=rows, retain=[Example("q", "a")])


def test_refusal_names_fields_split_counts_and_the_length_that_fits(words) -> None:
    lengths = split_lengths(words, _bench([3, 4, 5, 6, 7, 8, 9, 10, 11, 30]))  # 5 .. 13 and 32 tokens
    with pytest.raises(TruncationError) as err:
        check_truncation(lengths, max_length=10, max_truncated=0.1, counted_with="a word tokenizer")
    message = str(err.value)
    assert message.startswith("data.max_length=10 truncates more than data.max_truncated=0.1 (10%) of the rows of "
                              "forget (counted with a word tokenizer): forget: 4 of 10 rows (40.0%); longest 32")
    assert "set data.max_length=13 (truncates at most 10% of every split) or 32 (none)" in message
    assert "raise data.max_truncated (1.0 allows any)" in message
    check_truncation(lengths, max_length=13, max_truncated=0.1, counted_with="-")  # one of ten: at the limit
    check_truncation(lengths, max_length=10, max_truncated=1.0, counted_with="-")
    with pytest.raises(TruncationError, match=r"set data.max_length=32 \(truncates none\)"):
        check_truncation(lengths, max_length=31, max_truncated=0.0, counted_with="-")


def test_muse_raw_chunks_are_counted_but_not_refused(words) -> None:
    lengths = split_lengths(words, _bench([8, 8, 8], family="muse"))
    assert lengths[0].chunked and lengths[0].truncated(8) == 3
    assert lengths[0].describe(8).endswith("(chunked by the loader: pieces are cut by design)")
    check_truncation(lengths, max_length=8, max_truncated=0.0, counted_with="-")


def test_absent_sets_list_the_metrics_missing_without_them() -> None:
    bench = Benchmark(name="t", family="tofu", forget=[Example("q", "a")], retain=[Example("r", "b")],
                      eval_sets={"retain_perturbed": [Example("r", "b")], "world_facts": []})
    absent = absent_sets(bench)
    assert list(absent) == ["holdout", "real_authors", "world_facts"]
    assert absent["real_authors"].metrics == ("ra_prob", "ra_rouge", "ra_truth_ratio")
    assert "privleak" in absent["holdout"].metrics and "mia_min_k" in absent["holdout"].metrics


@pytest.mark.parametrize("family", list(OPTIONAL_SETS))
def test_optional_sets_name_registered_metrics(family) -> None:
    for name, spec in OPTIONAL_SETS[family].items():
        assert set(spec.metrics) <= set(DEFAULTS[family]), (family, name)


def test_tiny_tokenizer_trained_in_preflight_encodes_like_the_prepared_one(tmp_path) -> None:
    """preflight trains the tiny-llama tokenizer in memory; the trainer loads the one prepare saved: same ids."""
    rows = [Example(f"Who wrote book {i}?", f"Author number {i} wrote it in {1900 + i}.", "Paraphrase.",
                    ("Wrong one.", "Wrong two.")) for i in range(30)]
    bench = Benchmark(name="t", family="tofu", forget=rows[:10], retain=rows[10:])
    in_memory = train_tokenizer(tokenizer_texts(bench), 300)
    train_tokenizer(tokenizer_texts(bench), 300).save_pretrained(tmp_path)
    saved = load_tokenizer(str(tmp_path))
    for ex in rows:
        assert encode(in_memory, ex, 64) == encode(saved, ex, 64)
        assert full_length(in_memory, ex, "Wrong two.") == full_length(saved, ex, "Wrong two.")
