"""The synthetic-tofu generator: determinism, TOFU schema, disjoint authors, atomic files, cache reuse."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from trainables.config import DataConfig, SyntheticConfig
from trainables.data import synthetic_tofu
from trainables.data.loading import benchmark_fingerprint, load_benchmark
from trainables.data.schema import DataError

SMALL = SyntheticConfig(num_authors=6, qa_per_author=4, forget_percent=20, holdout_authors=2, num_world_facts=5,
                        num_perturbed=4, seed=3)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _rows(directory: Path, name: str) -> list[dict]:
    return json.loads((directory / name).read_text(encoding="utf-8"))


def _authors(rows: list[dict]) -> set[str]:
    """Subjects of the "Where was X born?" questions (the first fact every author has)."""
    return {m.group(1) for r in rows if (m := re.fullmatch(r"Where was (.+) born\?", r["question"]))}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = synthetic_tofu.generate(SMALL, tmp_path / "a")
    b = synthetic_tofu.generate(SMALL, tmp_path / "b")
    assert _files(a) == _files(b)


def test_other_seed_gives_other_content(tmp_path: Path) -> None:
    a = synthetic_tofu.generate(SMALL, tmp_path / "a")
    b = synthetic_tofu.generate(SMALL.model_copy(update={"seed": 4}), tmp_path / "b")
    assert (a / "forget20.json").read_bytes() != (b / "forget20.json").read_bytes()


def test_files_have_tofu_names_and_json_array_format(tmp_path: Path) -> None:
    out = synthetic_tofu.generate(SMALL, tmp_path)
    assert sorted(_files(out)) == sorted([
        "forget20.json", "forget20_perturbed.json", "retain80.json", "retain_perturbed.json", "holdout20.json",
        "world_facts_perturbed.json", "real_authors_perturbed.json", "manifest.json"])
    text = (out / "retain80.json").read_text(encoding="utf-8")
    assert text.startswith("[{") and text.endswith("}]\n") and text.count("\n") == 1
    assert synthetic_tofu.split_names(5) == ("forget05", "retain95", "holdout05")


def test_rows_follow_the_tofu_schema(tmp_path: Path) -> None:
    out = synthetic_tofu.generate(SMALL, tmp_path)
    for name in ("forget20.json", "retain80.json", "holdout20.json"):
        assert all(set(r) == {"question", "answer"} for r in _rows(out, name))
    for name in ("forget20_perturbed.json", "retain_perturbed.json", "world_facts_perturbed.json",
                 "real_authors_perturbed.json"):
        for r in _rows(out, name):
            assert set(r) == {"question", "answer", "paraphrased_question", "paraphrased_answer", "perturbed_answer"}
            wrong = r["perturbed_answer"]
            assert len(wrong) == SMALL.num_perturbed >= 3
            assert len(set(wrong)) == len(wrong) and r["answer"] not in wrong and r["paraphrased_answer"] not in wrong
            assert r["paraphrased_answer"] != r["answer"]
            assert all(3 <= len(s.split()) <= 15 for s in [r["answer"], r["paraphrased_answer"], *wrong])


def test_split_sizes_and_disjoint_authors(tmp_path: Path) -> None:
    out = synthetic_tofu.generate(SMALL, tmp_path)
    forget, retain, holdout = (_rows(out, n) for n in ("forget20.json", "retain80.json", "holdout20.json"))
    n_forget = 2  # ceil(6 * 20 / 100)
    assert len(forget) == n_forget * SMALL.qa_per_author
    assert len(retain) == (SMALL.num_authors - n_forget) * SMALL.qa_per_author
    assert len(holdout) == SMALL.holdout_authors * SMALL.qa_per_author
    f, r, h = _authors(forget), _authors(retain), _authors(holdout)
    assert (len(f), len(r), len(h)) == (2, 4, 2)
    assert not (f & r) and not (h & (f | r))
    assert len(_rows(out, "world_facts_perturbed.json")) == SMALL.num_world_facts
    retain_questions = {x["question"] for x in retain}
    assert {x["question"] for x in _rows(out, "retain_perturbed.json")} <= retain_questions
    assert [x["question"] for x in _rows(out, "forget20_perturbed.json")] == [x["question"] for x in forget]


def test_manifest_records_config_and_hashes(tmp_path: Path) -> None:
    out = synthetic_tofu.generate(SMALL, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "synthetic-tofu" and manifest["config"] == SMALL.model_dump()
    assert set(manifest["files"]) == set(_files(out)) - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_generation_is_not_taken_as_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        synthetic_tofu.generate(SMALL, tmp_path)
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not synthetic_tofu.is_current(SMALL, tmp_path)
    synthetic_tofu.ensure(SMALL, tmp_path)
    assert synthetic_tofu.is_current(SMALL, tmp_path)


def test_ensure_reuses_a_matching_generation_and_repairs_a_modified_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic_tofu.ensure(SMALL, tmp_path)
    original = (tmp_path / "forget20.json").read_bytes()
    with monkeypatch.context() as m:
        m.setattr(synthetic_tofu, "generate", lambda *a: pytest.fail("a matching generation was regenerated"))
        synthetic_tofu.ensure(SMALL, tmp_path)
    (tmp_path / "forget20.json").write_text("[]\n")
    synthetic_tofu.ensure(SMALL, tmp_path)
    assert (tmp_path / "forget20.json").read_bytes() == original


def test_ensure_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "forget10.json").write_text('[{"question": "q", "answer": "a"}]')
    with pytest.raises(DataError, match="refusing to overwrite"):
        synthetic_tofu.ensure(SMALL, tmp_path)


def test_out_of_range_sizes_are_refused() -> None:
    with pytest.raises(DataError, match="qa_per_author=11"):
        synthetic_tofu.build_splits(SMALL.model_copy(update={"qa_per_author": 11}))
    with pytest.raises(DataError, match="num_perturbed=9"):
        synthetic_tofu.build_splits(SMALL.model_copy(update={"num_perturbed": 9}))


def test_load_benchmark_generates_into_the_cache_and_trains_on_world_facts(tmp_path: Path) -> None:
    cfg = DataConfig(benchmark="synthetic-tofu", synthetic=SMALL, forget_split="forget01")  # split names ignored
    bench = load_benchmark(cfg, tmp_path)
    assert bench.name == "synthetic-tofu" and bench.family == "tofu"
    assert Path(bench.source) == tmp_path / "data" / f"synthetic-tofu-{synthetic_tofu.config_hash(SMALL)}"
    assert (len(bench.forget), len(bench.retain), len(bench.holdout)) == (8, 16, 8)
    assert all(e.paraphrased_answer and len(e.perturbed_answer) == 4 for e in bench.forget)
    assert set(bench.eval_sets) == {"retain_perturbed", "real_authors", "world_facts"}
    assert bench.extra_train == bench.eval_sets["world_facts"] + bench.eval_sets["real_authors"]


def test_fingerprint_depends_on_content_not_location(tmp_path: Path) -> None:
    cfg = DataConfig(synthetic=SMALL)
    first = benchmark_fingerprint(load_benchmark(cfg, tmp_path / "one"))
    assert first == benchmark_fingerprint(load_benchmark(cfg, tmp_path / "two"))
    other = DataConfig(synthetic=SMALL.model_copy(update={"seed": 5}))
    assert first != benchmark_fingerprint(load_benchmark(other, tmp_path / "one"))
