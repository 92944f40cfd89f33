"""Deterministic TOFU subsets (`data.forget_limit` / `data.retain_limit`) and the facts a scratch model is taught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables.config import DataConfig, TrialConfig
from trainables.data.loading import benchmark_fingerprint, load_benchmark
from trainables.data.schema import DataError
from trainables.data.tofu import load_tofu
from trainables.engine.recipes.finetune import finetune_extra

REAL_TOFU = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tofu"


def _qa(prefix: str, n: int) -> list[dict]:
    return [{"question": f"{prefix} question {i}?", "answer": f"{prefix} answer {i}."} for i in range(n)]


def _perturbed(rows: list[dict]) -> list[dict]:
    return [{**r, "paraphrased_answer": "So: " + r["answer"], "perturbed_answer": ["w1", "w2", "w3"]} for r in rows]


def _tofu_dir(root: Path) -> Path:
    """forget10: 5 rows; retain90: 8 rows of which retain_perturbed evaluates rows 5, 2 and 6 (in that order)."""
    retain = _qa("retain", 8)
    files = {"forget10": _perturbed(_qa("forget", 5)), "retain90": retain,
             "retain_perturbed": _perturbed([retain[5], retain[2], retain[6]]),
             "world_facts_perturbed": _perturbed(_qa("world", 2)), "real_authors_perturbed": _perturbed(_qa("real", 3))}
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (root / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    return root


def _load(root: Path, **limits: int | None):
    return load_tofu(DataConfig(benchmark="tofu", path=str(root), holdout_split=None, **limits))


def _numbers(rows) -> list[int]:
    return [int(e.question.split()[-1].rstrip("?")) for e in rows]


def test_forget_limit_keeps_the_first_rows_with_their_perturbed_fields(tmp_path: Path) -> None:
    bench = _load(_tofu_dir(tmp_path), forget_limit=2)
    assert _numbers(bench.forget) == [0, 1]
    assert bench.forget[1].paraphrased_answer == "So: forget answer 1." and len(bench.forget[1].perturbed_answer) == 3
    assert len(bench.retain) == 8 and len(bench.eval_sets["retain_perturbed"]) == 3  # retain untouched


def test_retain_limit_takes_the_evaluated_rows_first_in_file_order(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    bench = _load(root, retain_limit=5)
    # retain_perturbed's rows 2, 5, 6 in retain file order, then the others in file order: 0, 1
    assert _numbers(bench.retain) == [2, 5, 6, 0, 1]
    assert _numbers(bench.eval_sets["retain_perturbed"]) == [5, 2, 6]  # all kept, in their own file's order
    assert _load(root, retain_limit=5).retain == bench.retain  # deterministic


def test_a_retain_limit_below_the_evaluated_rows_cuts_retain_perturbed(tmp_path: Path) -> None:
    bench = _load(_tofu_dir(tmp_path), retain_limit=2)
    assert _numbers(bench.retain) == [2, 5]
    assert _numbers(bench.eval_sets["retain_perturbed"]) == [5, 2]
    assert len(bench.eval_sets["world_facts"]) == 2  # other eval sets untouched


def test_limits_equal_to_the_split_keep_everything(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    full, limited = _load(root), _load(root, forget_limit=5, retain_limit=8)
    assert limited.forget == full.forget and len(limited.retain) == 8
    assert set(limited.retain) == set(full.retain)


@pytest.mark.parametrize(("field", "value", "split", "rows"), [
    ("forget_limit", 6, "forget10", 5), ("retain_limit", 9, "retain90", 8)])
def test_a_limit_larger_than_its_split_is_refused(tmp_path: Path, field: str, value: int, split: str,
                                                  rows: int) -> None:
    with pytest.raises(DataError) as err:
        _load(_tofu_dir(tmp_path), **{field: value})
    message = str(err.value)
    assert f"data.{field}={value}" in message and f"'{split}'" in message and str(tmp_path) in message
    assert f"({rows} rows); allowed: 1..{rows}, or null" in message


def test_a_retain_perturbed_of_another_split_is_refused_under_a_limit(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    (root / "retain_perturbed.json").write_text(json.dumps(_perturbed(_qa("other", 2))), encoding="utf-8")
    with pytest.raises(DataError, match="retain_perturbed of .* shares no question/answer with retain split"):
        _load(root, retain_limit=4)


def test_limits_change_the_fingerprint(tmp_path: Path) -> None:
    root = _tofu_dir(tmp_path)
    assert benchmark_fingerprint(_load(root)) != benchmark_fingerprint(_load(root, retain_limit=4))


def test_synthetic_tofu_honours_the_limits(tmp_path: Path) -> None:
    cfg = DataConfig(synthetic={"num_authors": 6, "qa_per_author": 4, "forget_percent": 34}, forget_limit=3,
                     retain_limit=5)
    bench = load_benchmark(cfg, tmp_path)
    assert (len(bench.forget), len(bench.retain)) == (3, 5)
    kept = {(e.question, e.answer) for e in bench.retain}
    assert all((e.question, e.answer) in kept for e in bench.eval_sets["retain_perturbed"])


def test_a_scratch_model_is_taught_real_authors_and_world_facts(tmp_path: Path) -> None:
    bench = _load(_tofu_dir(tmp_path))
    assert bench.extra_train == []
    tiny = TrialConfig()
    extra = finetune_extra(bench, tiny)
    assert extra == bench.eval_sets["real_authors"] + bench.eval_sets["world_facts"] and len(extra) == 5
    pretrained = TrialConfig(model={"name_or_path": str(tmp_path / "some-pretrained-model")})
    assert finetune_extra(bench, pretrained) == []  # a pretrained model knows them already


def test_synthetic_facts_are_taught_to_any_model(tmp_path: Path) -> None:
    bench = load_benchmark(DataConfig(synthetic={"num_authors": 6, "qa_per_author": 4}), tmp_path)
    pretrained = TrialConfig(model={"name_or_path": str(tmp_path / "some-pretrained-model")})
    assert finetune_extra(bench, pretrained) == bench.extra_train != []
    assert finetune_extra(bench, TrialConfig()) == bench.extra_train  # not twice for the tiny model


@pytest.fixture(scope="module")
def real_tofu() -> Path:
    if not (REAL_TOFU / "retain99.json").is_file():
        pytest.skip(f"real TOFU files not found at {REAL_TOFU}")
    return REAL_TOFU


def test_real_tofu_subset_is_the_evaluated_retain_rows(real_tofu: Path) -> None:
    full = load_tofu(DataConfig(benchmark="tofu", path=str(real_tofu), holdout_split=None, forget_split="forget01",
                                retain_split="retain99"))
    bench = load_tofu(DataConfig(benchmark="tofu", path=str(real_tofu), holdout_split=None, forget_split="forget01",
                                 retain_split="retain99", forget_limit=10, retain_limit=30))
    assert bench.forget == full.forget[:10] and len(full.forget) == 40
    # retain_perturbed evaluates the first 400 rows of retain99, so the subset is retain99's first 30 rows
    assert bench.retain == full.retain[:30]
    assert bench.eval_sets["retain_perturbed"] == full.eval_sets["retain_perturbed"][:30]
    # retain99 asks "What is the full name of the author?" at rows 100 and 440 of two authors; only row 100 is
    # evaluated, so a 401-row subset ends with retain99's row 401, not row 440
    wide = load_tofu(DataConfig(benchmark="tofu", path=str(real_tofu), holdout_split=None, forget_split="forget01",
                                retain_split="retain99", retain_limit=401))
    assert wide.retain == full.retain[:401] and len(wide.eval_sets["retain_perturbed"]) == 400
    assert finetune_extra(bench, TrialConfig()) == bench.eval_sets["real_authors"] + bench.eval_sets["world_facts"]
    assert len(finetune_extra(bench, TrialConfig())) == 217
