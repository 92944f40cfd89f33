"""The MUSE loader on a small local `{config}/{split}.json[l]` tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables.config import DataConfig
from trainables.data.loading import load_benchmark
from trainables.data.muse import chunk_words, load_muse
from trainables.data.schema import DataError, Example

FORGET_TEXTS = ["one two three four five six seven eight nine ten", "eleven twelve\nthirteen"]


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")


def _muse_dir(root: Path) -> Path:
    _write(root / "raw" / "forget.json", [{"text": t} for t in FORGET_TEXTS])
    _write(root / "raw" / "retain1.jsonl", [{"text": "r1 " * 20}])
    _write(root / "raw" / "retain2.json", [{"text": "r2 " * 4}])
    _write(root / "raw" / "holdout.json", [{"text": "h " * 9}])
    _write(root / "verbmem" / "forget.json", [{"prompt": "one two", "gt": " three four"}])
    _write(root / "knowmem" / "forget_qa.json", [{"question": "What is one?", "answer": "1"},
                                                 {"question": "What is two?", "answer": "2"}])
    _write(root / "knowmem" / "forget_qa_icl.json", [{"question": "What is ten?", "answer": "10"},
                                                     {"question": "What is six?", "answer": "6"}])
    _write(root / "knowmem" / "retain_qa.json", [{"question": "What is r1?", "answer": "retain"}])
    return root


def _cfg(path: Path, **kw: object) -> DataConfig:
    return DataConfig(benchmark="muse", path=str(path), max_length=8, **kw)


def test_raw_splits_are_joined_and_chunked_by_words(tmp_path: Path) -> None:
    bench = load_muse(_cfg(_muse_dir(tmp_path)))
    assert (bench.name, bench.family, bench.source) == ("muse", "muse", str(tmp_path))
    assert bench.forget == [Example("", "one two three four five six seven eight", raw=True),
                            Example("", "nine ten eleven twelve thirteen", raw=True)]
    assert [len(e.answer.split()) for e in bench.retain] == [8, 8, 4]  # retain1 by default (TOFU's retain90)
    assert [len(e.answer.split()) for e in bench.holdout] == [8, 1]
    assert all(e.raw and e.question == "" for e in bench.forget + bench.retain + bench.holdout)


def test_retain2_is_used_when_asked(tmp_path: Path) -> None:
    bench = load_muse(_cfg(_muse_dir(tmp_path), retain_split="retain2"))
    assert bench.retain == [Example("", "r2 r2 r2 r2", raw=True)]


def test_eval_sets(tmp_path: Path) -> None:
    sets = load_muse(_cfg(_muse_dir(tmp_path))).eval_sets
    assert set(sets) == {"verbmem_forget", "knowmem_forget", "knowmem_retain"}
    assert sets["verbmem_forget"] == [Example("one two", " three four", raw=True)]
    first = sets["knowmem_forget"][0]
    assert first.raw and first.answer == " 1"
    assert first.question == ("Question: What is ten?\nAnswer: 10\n\nQuestion: What is six?\nAnswer: 6\n\n"
                              "Question: What is one?\nAnswer:")
    assert sets["knowmem_retain"] == [Example("What is r1?", "retain")]  # no ICL split: formatted at encode time


def test_optional_parts_may_be_absent(tmp_path: Path) -> None:
    root = _muse_dir(tmp_path)
    for name in ("raw/holdout.json", "verbmem/forget.json", "knowmem/retain_qa.json"):
        (root / name).unlink()
    bench = load_muse(_cfg(root))
    assert bench.holdout == [] and set(bench.eval_sets) == {"knowmem_forget"}


def test_missing_forget_lists_the_files_there(tmp_path: Path) -> None:
    root = _muse_dir(tmp_path)
    (root / "raw" / "forget.json").unlink()
    with pytest.raises(DataError, match=r"no file for split 'raw/forget'.*raw/retain1\.jsonl"):
        load_muse(_cfg(root))


def test_row_without_text_names_file_row_and_field(tmp_path: Path) -> None:
    root = _muse_dir(tmp_path)
    _write(root / "raw" / "forget.json", [{"text": "fine"}, {"txt": "typo"}])
    with pytest.raises(DataError, match=r"forget\.json: row 1: field 'text' must be a string, got missing"):
        load_muse(_cfg(root))


def test_chunk_words() -> None:
    assert chunk_words(["a b  c", "d\ne"], 2) == ["a b", "c d", "e"]
    assert chunk_words(["  "], 3) == []


def test_load_benchmark_dispatches_to_muse(tmp_path: Path) -> None:
    bench = load_benchmark(_cfg(_muse_dir(tmp_path / "muse")), tmp_path / "cache")
    assert bench.family == "muse" and len(bench.forget) == 2
