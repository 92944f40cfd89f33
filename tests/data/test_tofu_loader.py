"""The TOFU loader on local directories in TOFU's layout, and the file helpers' error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables.config import DataConfig
from trainables.data.files import find_split_file, read_records, to_examples
from trainables.data.loading import load_benchmark
from trainables.data.schema import DataError
from trainables.data.tofu import load_tofu


def _qa(prefix: str, n: int) -> list[dict]:
    return [{"question": f"{prefix} question {i}?", "answer": f"{prefix} answer {i}."} for i in range(n)]


def _perturbed(rows: list[dict], paraphrase: bool = True) -> list[dict]:
    out = []
    for r in rows:
        row = {**r, "perturbed_answer": [f"wrong {k} {r['answer']}" for k in range(3)],
               "paraphrased_question": "Rephrased: " + r["question"]}
        if paraphrase:
            row["paraphrased_answer"] = "In other words, " + r["answer"]
        out.append(row)
    return out


def _write(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")


def _tofu_dir(root: Path, suffix: str = ".json", eval_sets: bool = True) -> Path:
    forget, retain = _qa("forget", 4), _qa("retain", 6)
    files = {"forget10": forget, "forget10_perturbed": _perturbed(forget), "retain90": retain,
             "holdout10": _qa("holdout", 3)}
    if eval_sets:
        files |= {"retain_perturbed": _perturbed(retain[:2]), "world_facts_perturbed": _perturbed(_qa("world", 2)),
                  "real_authors_perturbed": _perturbed(_qa("real", 2), paraphrase=False)}
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        _write(root / f"{name}{suffix}", rows)
    return root


def _cfg(path: Path, **kw: str) -> DataConfig:
    return DataConfig(benchmark="tofu", path=str(path), **kw)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_loads_a_local_directory(tmp_path: Path, suffix: str) -> None:
    bench = load_tofu(_cfg(_tofu_dir(tmp_path, suffix)))
    assert (bench.name, bench.family, bench.source) == ("tofu", "tofu", str(tmp_path))
    assert (len(bench.forget), len(bench.retain), len(bench.holdout)) == (4, 6, 3)
    assert {k: len(v) for k, v in bench.eval_sets.items()} == {"retain_perturbed": 2, "real_authors": 2,
                                                               "world_facts": 2}
    assert bench.extra_train == []  # real TOFU models know world facts from pretraining
    assert bench.retain[0].paraphrased_answer is None and bench.retain[0].perturbed_answer == ()


def test_forget_rows_take_the_perturbed_fields(tmp_path: Path) -> None:
    first = load_tofu(_cfg(_tofu_dir(tmp_path))).forget[0]
    assert first.question == "forget question 0?" and first.answer == "forget answer 0."
    assert first.paraphrased_answer == "In other words, forget answer 0."
    assert first.perturbed_answer == tuple(f"wrong {k} forget answer 0." for k in range(3))


def test_rows_without_paraphrase_use_the_answer(tmp_path: Path) -> None:
    real = load_tofu(_cfg(_tofu_dir(tmp_path))).eval_sets["real_authors"][0]
    assert real.paraphrased_answer == real.answer and len(real.perturbed_answer) == 3


def test_missing_eval_sets_are_absent(tmp_path: Path) -> None:
    bench = load_tofu(_cfg(_tofu_dir(tmp_path, eval_sets=False)))
    assert bench.eval_sets == {}


def test_missing_forget_split_lists_allowed_names(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_tofu(_cfg(_tofu_dir(tmp_path), forget_split="forget20"))
    message = str(err.value)
    assert "'forget20'" in message and "present there: forget10" in message
    assert "forget01, forget05, forget10" in message and "data.forget_split" in message


def test_missing_retain_split_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no retain split 'retain95'.*retain90"):
        load_tofu(_cfg(_tofu_dir(tmp_path), retain_split="retain95"))


def test_a_configured_holdout_split_must_exist(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    with pytest.raises(DataError, match="no holdout split 'holdout05'.*present there: holdout10"):
        load_tofu(_cfg(root, holdout_split="holdout05"))
    (root / "holdout10.json").unlink()
    with pytest.raises(DataError) as err:  # no holdout files at all: still an error, not a silent loss of MIA
        load_tofu(_cfg(root))
    message = str(err.value)
    assert "no holdout split 'holdout10'" in message and "holdout splits present there: none" in message
    assert "set data.holdout_split to one of them or to null to run without MIA and PrivLeak" in message


def test_holdout_split_null_runs_without_holdout(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    assert load_tofu(_cfg(root, holdout_split=None)).holdout == []  # also when the files exist: the config decides
    (root / "holdout10.json").unlink()
    bench = load_tofu(_cfg(root, holdout_split=None))
    assert bench.holdout == [] and len(bench.forget) == 4


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    (root / "retain90.json").write_text('[{"question": "q", "answer": ', encoding="utf-8")
    with pytest.raises(DataError, match=r"retain90\.json: not valid JSON \(line 1"):
        load_tofu(_cfg(root))


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "forget10.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n\n{"question": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"forget10\.jsonl: line 3 is not valid JSON"):
        read_records(path)


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"),
    ("[]", "no rows"),
    ("42", "got a JSON number"),
    ('["just a string"]', "row 0 is a JSON string"),
    ('{"question": ["q"], "answer": ["a"]}', "column-oriented"),
])
def test_json_that_is_not_a_list_of_rows_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "forget10.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as err:
        read_records(path)
    assert str(path) in str(err.value)


def test_json_lines_under_a_json_name_are_read(tmp_path: Path) -> None:
    # datasets.Dataset.to_json writes JSON Lines even to a .json file
    path = tmp_path / "forget10.json"
    path.write_text('{"question": "q1", "answer": "a\\u2028b"}\n{"question": "q2", "answer": "c"}\n',
                    encoding="utf-8")
    assert [r["question"] for r in read_records(path)] == ["q1", "q2"]
    single = tmp_path / "one.json"
    single.write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    assert read_records(single) == [{"question": "q", "answer": "a"}]


def test_row_missing_answer_names_row_and_field(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    rows = _qa("forget", 4)
    del rows[2]["answer"]
    _write(root / "forget10.json", rows)
    with pytest.raises(DataError, match=r"forget10\.json.*row 2: field 'answer' must be a string, got missing"):
        load_tofu(_cfg(root))


def test_empty_answer_and_perturbed_answer_are_refused() -> None:
    with pytest.raises(DataError, match=r"f\.json: row 0: field 'answer' is empty"):
        to_examples([{"question": "q", "answer": "  "}], "f.json")
    with pytest.raises(DataError, match=r"f\.json: row 1: field 'perturbed_answer' must be a non-empty list"):
        to_examples([{"question": "q", "answer": "a", "perturbed_answer": ["w"]},
                     {"question": "q", "answer": "a", "perturbed_answer": []}], "f.json")
    with pytest.raises(DataError, match="'perturbed_answer' is missing"):
        to_examples([{"question": "q", "answer": "a"}], "f.json", need_perturbed=True)
    with pytest.raises(DataError, match="'perturbed_answer' item 1 is empty"):
        to_examples([{"question": "q", "answer": "a", "perturbed_answer": ["w", ""]}], "f.json")


def test_a_single_perturbed_string_is_one_wrong_answer() -> None:
    (example,) = to_examples([{"question": "q", "answer": "a", "perturbed_answer": "w"}], "f.json")
    assert example.perturbed_answer == ("w",) and example.paraphrased_answer == "a"


def test_eval_set_rows_without_perturbed_answer_are_refused(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    _write(root / "world_facts_perturbed.json", _qa("world", 2))
    with pytest.raises(DataError, match=r"world_facts_perturbed\.json: row 0: field 'perturbed_answer' is missing"):
        load_tofu(_cfg(root))


def test_empty_forget_split_is_an_error(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    _write(root / "forget10.json", [])
    with pytest.raises(DataError, match=r"forget10\.json: no rows"):
        load_tofu(_cfg(root))


def test_forget_and_retain_must_not_overlap(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    _write(root / "retain90.json", _qa("retain", 6) + _qa("forget", 4)[1:3])
    with pytest.raises(DataError, match=r"2 question\(s\) of forget split 'forget10'.*'forget question 1\?'"):
        load_tofu(_cfg(root))


def test_perturbed_file_of_another_split_is_refused(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    _write(root / "forget10_perturbed.json", _perturbed(_qa("other", 2)))
    with pytest.raises(DataError, match="shares no question"):
        load_tofu(_cfg(root))


def test_find_split_file_lists_existing_files(tmp_path: Path) -> None:
    _tofu_dir(tmp_path)
    with pytest.raises(DataError, match=r"tried forget20\.json and forget20\.jsonl; data files there: forget10\.json"):
        find_split_file(tmp_path, "forget20")
    _write(tmp_path / "forget10.jsonl", _qa("forget", 1))
    with pytest.raises(DataError, match="keep one of them"):
        find_split_file(tmp_path, "forget10")


def test_a_path_that_is_neither_directory_nor_hub_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither an existing directory nor a hub dataset name"):
        load_tofu(_cfg(tmp_path / "missing" / "dir"))


def test_load_benchmark_dispatches_to_tofu(tmp_path: Path) -> None:
    bench = load_benchmark(_cfg(_tofu_dir(tmp_path / "tofu")), tmp_path / "cache")
    assert bench.name == "tofu" and len(bench.forget) == 4
    assert not (tmp_path / "cache").exists()
