"""How many rows of each split `data.max_length` truncates, counted before any compute with the model's tokenizer.

A truncated row is trained or scored on part of its answer, so its loss, probability and truth ratio are not the
benchmark's; a config that truncates much of a split measures something else than it says. Lengths are counted
exactly as `trainables.data.formatting.encode` builds sequences (prompt + answer + EOS); a row also counts as
truncated when one of its paraphrased / perturbed answers is cut, since the truth ratio scores those too.

MUSE's raw forget / retain / holdout texts are chunked to `max_length` words by the loader, so their pieces are cut
to `max_length` tokens by design; they are counted but not refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainables.data.formatting import full_length
from trainables.data.schema import Benchmark, DataError, Example

TRAIN_SPLITS = ("forget", "retain", "holdout")
MIN_LENGTH = 8  # the smallest data.max_length allowed


class TruncationError(DataError):
    """`data.max_length` truncates more of a split than `data.max_truncated` allows."""


@dataclass(frozen=True)
class SplitLengths:
    """Untruncated sequence lengths of one split, one entry per row.

    Attributes:
        split: "forget", "retain", "holdout" or an eval-set key (e.g. "retain_perturbed").
        answer: tokens of prompt + answer + EOS.
        scored: the most tokens of any sequence of the row that is trained or scored: the answer and, where the
            row has them, its paraphrased and perturbed answers.
        alternatives: some row has paraphrased / perturbed answers.
        chunked: the loader cut these texts into `max_length`-word pieces (MUSE raw), so truncation is by design.
    """

    split: str
    answer: tuple[int, ...]
    scored: tuple[int, ...]
    alternatives: bool = False
    chunked: bool = False

    @property
    def rows(self) -> int:
        return len(self.answer)

    def truncated(self, max_length: int) -> int:
        """Rows with some scored sequence longer than `max_length`."""
        return int(sum(n > max_length for n in self.scored))

    def truncated_answers(self, max_length: int) -> int:
        """Rows whose prompt + answer + EOS is longer than `max_length`."""
        return int(sum(n > max_length for n in self.answer))

    def describe(self, max_length: int) -> str:
        """`forget: 7 of 40 rows (17.5%), 21 (52.5%) with paraphrased/perturbed answers; longest 192 tokens`."""
        text = f"{self.split}: {_count(self.truncated_answers(max_length), self.rows)}"
        if self.alternatives:
            text += f", {_count(self.truncated(max_length), self.rows, of=False)} with paraphrased/perturbed answers"
        text += f"; longest {max(self.scored)} tokens"
        return text + (" (chunked by the loader: pieces are cut by design)" if self.chunked else "")


def _count(n: int, rows: int, of: bool = True) -> str:
    share = f"{100 * n / rows:.1f}%"
    return f"{n} of {rows} rows ({share})" if of else f"{n} ({share})"


def _row_lengths(tokenizer, example: Example) -> tuple[int, int]:
    answer = full_length(tokenizer, example)
    alternatives = [example.paraphrased_answer] if example.paraphrased_answer else []
    alternatives += list(example.perturbed_answer)
    return answer, max([answer] + [full_length(tokenizer, example, a) for a in alternatives])


def split_lengths(tokenizer, bench: Benchmark) -> list[SplitLengths]:
    """`SplitLengths` of every non-empty split of `bench`: forget, retain, holdout, then the eval sets."""
    splits = {"forget": bench.forget, "retain": bench.retain, "holdout": bench.holdout, **bench.eval_sets}
    out = []
    for name, rows in splits.items():
        if not rows:
            continue
        answer, scored = zip(*(_row_lengths(tokenizer, e) for e in rows))
        alternatives = any(e.paraphrased_answer or e.perturbed_answer for e in rows)
        out.append(SplitLengths(name, answer, scored, alternatives=alternatives,
                                chunked=bench.family == "muse" and name in TRAIN_SPLITS))
    return out


def fitting_length(lengths: Sequence[int], max_share: float) -> int:
    """The smallest `max_length` that truncates at most `max_share` of `lengths` (the longest when 0)."""
    ordered = np.sort(np.asarray(lengths))
    candidates = np.unique(ordered)
    over = len(ordered) - np.searchsorted(ordered, candidates, side="right")
    return int(candidates[over <= max_share * len(ordered)][0])


def check_truncation(splits: Sequence[SplitLengths], max_length: int, max_truncated: float, counted_with: str) -> None:
    """Refuse when `max_length` truncates more than `max_truncated` of the rows of any split not chunked by design.

    Args:
        splits: From `split_lengths`.
        max_length: `data.max_length`.
        max_truncated: `data.max_truncated` (1.0 allows any).
        counted_with: The tokenizer, in words, for the message.

    Raises:
        TruncationError: names both fields, each split over the limit with its counts, and the `max_length` that
            would fit: at most `max_truncated` of every split, and every row.
    """
    checked = [s for s in splits if not s.chunked]
    over = [s for s in checked if s.truncated(max_length) > max_truncated * s.rows]
    if not over:
        return
    fits_share = max(MIN_LENGTH, *(fitting_length(s.scored, max_truncated) for s in checked))
    fits_all = max(max(s.scored) for s in checked)
    details = "; ".join(s.describe(max_length) for s in over)
    share = f"{100 * max_truncated:g}%"
    fix = (f"set data.max_length={fits_all} (truncates none)" if fits_share == fits_all else
           f"set data.max_length={fits_share} (truncates at most {share} of every split) or {fits_all} (none)")
    raise TruncationError(
        f"data.max_length={max_length} truncates more than data.max_truncated={max_truncated:g} ({share}) of the "
        f"rows of {', '.join(s.split for s in over)} (counted with {counted_with}): {details}. To fix, {fix}, "
        f"or raise data.max_truncated (1.0 allows any)"
    )
