"""Refusal table: benchmark files that are valid JSON but wrong as data, refused by `validate` with file and row.

Each case breaks one file of the workspace's TOFU-layout directory (forget10 + its perturbed file, retain90,
holdout10); `validate` must exit 2 naming the file, the row(s) and what was expected, with nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.refusals.harness import FORGET, HOLDOUT, RETAIN, perturbed_rows, write_json

OVERLAP = "also in retain split 'retain90' (compared after normalising case, Unicode and whitespace)"


def _retain_plus(row: dict) -> Callable[[Path], None]:
    """Retain rows with `row` appended (as row 6)."""
    return lambda d: write_json(d / "retain90.json", RETAIN + [row])


def _forget_rows(rows: list[dict]) -> Callable[[Path], None]:
    """Forget rows replaced in both forget10.json and its perturbed file (they are merged by question)."""
    def write(d: Path) -> None:
        write_json(d / "forget10.json", rows)
        write_json(d / "forget10_perturbed.json", perturbed_rows(rows))
    return write


def _perturbed_answer(index: int, value) -> Callable[[Path], None]:
    """forget10_perturbed.json with row `index`'s perturbed_answer replaced by `value`."""
    def write(d: Path) -> None:
        rows = perturbed_rows(FORGET)
        rows[index]["perturbed_answer"] = value
        write_json(d / "forget10_perturbed.json", rows)
    return write


def _file_text(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text, encoding="utf-8")


def _retain_row(index: int, **fields) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        rows = [dict(r) for r in RETAIN]
        rows[index].update(fields)
        write_json(d / "retain90.json", rows)
    return write


# case id -> (how the data directory is broken, fragments the message must hold)
CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "overlap-after-case-and-whitespace": (
        _retain_plus({"question": "  FORGET   Question 2? ", "answer": "another answer"}),
        [OVERLAP, "forget10.json", "row 2 and", "retain90.json row 6", "'forget question 2?'"]),
    "overlap-full-width-unicode": (
        _retain_plus({"question": "ｆｏｒｇｅｔ question 1？", "answer": "another answer"}),
        [OVERLAP, "row 1 and", "retain90.json row 6", "'forget question 1?'"]),
    "overlap-non-breaking-space-and-tab": (
        _retain_plus({"question": "forget\u00a0question\t3?", "answer": "another answer"}),
        [OVERLAP, "row 3 and", "retain90.json row 6"]),
    "duplicated-retain-row-differing-in-case": (
        _retain_plus({"question": RETAIN[1]["question"].upper(), "answer": " " + RETAIN[1]["answer"] + "  "}),
        ["retain90.json: rows 1 and 6 are the same question and answer", "'RETAIN QUESTION 1?'", "keep one"]),
    "duplicated-forget-row": (
        _forget_rows(FORGET + [FORGET[0]]),
        ["forget10.json", "rows 0 and 4 are the same question and answer", "'forget question 0?'"]),
    "duplicated-holdout-row": (
        lambda d: write_json(d / "holdout10.json", HOLDOUT + [HOLDOUT[2]]),
        ["holdout10.json: rows 2 and 3 are the same question and answer"]),
    "perturbed-answer-is-an-object": (
        _perturbed_answer(1, {"a": 1}),
        ["forget10_perturbed.json", "row 1: field 'perturbed_answer' must be a non-empty list of strings",
         'got a JSON object {"a": 1}']),
    "perturbed-answer-item-is-an-object": (
        _perturbed_answer(2, ["a wrong answer", {"text": "w"}]),
        ["row 2: field 'perturbed_answer' item 1", "expected a non-empty string, got a JSON object"]),
    "huge-perturbed-object-is-shortened": (
        _perturbed_answer(0, {"k": "x" * 100_000}),
        ["row 0: field 'perturbed_answer'", 'got a JSON object {"k": "xxxx', "..."]),
    "question-is-an-object": (
        _retain_row(3, question={"text": "what?"}),
        ["retain90.json: row 3: field 'question' must be a string", 'got a JSON object {"text": "what?"}']),
    "file-is-an-object-of-rows": (
        lambda d: write_json(d / "retain90.json", {str(i): r for i, r in enumerate(RETAIN)}),
        ["retain90.json: expected a JSON array of row objects or JSON Lines",
         "found a JSON object of 6 objects keyed by '0', '1', '2', ...", "write its values as a JSON array"]),
    "file-wraps-its-rows-in-a-field": (
        lambda d: write_json(d / "holdout10.json", {"version": 1, "data": HOLDOUT}),
        ["holdout10.json: expected a JSON array of row objects",
         "found a JSON object whose field 'data' holds a list of 3 objects", "write that list as the whole file"]),
    "file-is-column-oriented": (
        _file_text("holdout10.json", json.dumps({"question": [r["question"] for r in HOLDOUT],
                                                 "answer": [r["answer"] for r in HOLDOUT]})),
        ["holdout10.json: expected a JSON array of row objects", "column-oriented", "'question', 'answer'"]),
    "row-is-an-array": (
        lambda d: write_json(d / "forget10.json", FORGET[:2] + [["forget question 2?", "an answer"]] + FORGET[3:]),
        ["forget10.json: row 2 is a JSON array", "expected an object of fields"]),
}


@pytest.mark.parametrize(("breaks", "fragments"), CASES.values(), ids=CASES.keys())
def test_bad_data_is_refused_by_validate(workspace, capsys, breaks, fragments):
    breaks(workspace.data)
    sweep = workspace.write_sweep()
    workspace.refused(["validate", str(sweep)], capsys, fragments)


def test_the_valid_workspace_data_passes(workspace, capsys):
    """The table's baseline: the unbroken directory validates, so each case above fails for its own break."""
    from orchestrator import cli

    assert cli.main(["validate", str(workspace.write_sweep())]) == 0, capsys.readouterr().err
