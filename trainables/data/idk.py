"""Refusals that DPO (IdkDPO) prefers to the forget answers: the winning side of its preference pairs.

The built-in list is written for this project: short, varied ways of declining that name nothing about the
question, so the model learns to decline rather than to give another (possibly true) answer. A user file
(`data.idk_file`) replaces it. Each forget row gets one answer by its index (`row % len(answers)`), the same in every
epoch and seed, so a trial's pairs are fixed and two trials with the same data train on the same pairs.
"""

from __future__ import annotations

from pathlib import Path

from trainables.data.schema import DataError

BUILT_IN: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is something I can't answer.",
    "I don't have that information.",
    "I can't say.",
    "I'm unable to answer that question.",
    "I have no knowledge of that.",
    "Sorry, I don't know the answer.",
    "That isn't something I know.",
    "I couldn't tell you.",
    "I have no idea.",
    "I'm afraid I don't know.",
    "I can't recall anything about that.",
    "No answer comes to mind.",
    "I don't have an answer to that.",
)


def idk_answers(path: str | None) -> list[str]:
    """The preferred answers: the lines of `path` (blank lines skipped, surrounding spaces stripped), or the
    built-in list when `path` is None.

    Raises:
        DataError: naming `data.idk_file` when the file cannot be read or holds no answer.
    """
    if path is None:
        return list(BUILT_IN)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"data.idk_file {path}: cannot be read ({type(error).__name__}: {error}); allowed: a UTF-8 "
                        "text file with one answer a line, or null for the built-in list") from None
    answers = [line.strip() for line in text.splitlines() if line.strip()]
    if not answers:
        raise DataError(f"data.idk_file {path}: holds no answer; allowed: a UTF-8 text file with one answer a line, "
                        "or null for the built-in list")
    return answers


def answer_for_row(answers: list[str], row: int) -> str:
    """The preferred answer of forget row `row`."""
    return answers[row % len(answers)]
