"""DPO's preferred answers: the built-in list, a user file, and the refusals of a file that holds none."""

from __future__ import annotations

import pytest

from trainables.data.idk import BUILT_IN, answer_for_row, idk_answers
from trainables.data.schema import DataError


def test_built_in_answers_are_distinct_refusals_assigned_by_row():
    answers = idk_answers(None)
    assert answers == list(BUILT_IN) and len(set(answers)) == len(answers) >= 10
    assert [answer_for_row(answers, i) for i in (0, 1, len(answers), len(answers) + 1)] == [
        answers[0], answers[1], answers[0], answers[1]]


def test_a_user_file_replaces_the_list(tmp_path):
    path = tmp_path / "idk.txt"
    path.write_text("  No idea.  \n\nCan't help with that.\n", encoding="utf-8")
    assert idk_answers(str(path)) == ["No idea.", "Can't help with that."]


@pytest.mark.parametrize("content,reason", [(None, "cannot be read"), ("\n  \n", "holds no answer"),
                                            (b"\xff\xfe\x00", "cannot be read")])
def test_an_unusable_file_is_refused_naming_the_field(tmp_path, content, reason):
    path = tmp_path / "idk.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"data.idk_file {path}: {reason}"):
        idk_answers(str(path))
