"""The A/B split of the forget set: reproducible, disjoint, covering, and refused where nothing is held out."""

from __future__ import annotations

import math

import pytest

from trainables.attacks.split import attack_split


@pytest.mark.parametrize("n", [2, 3, 10, 401])
def test_halves_are_disjoint_sorted_and_cover_the_forget_set(n):
    a, b = attack_split(n, seed=7)
    assert len(a) == math.ceil(n / 2) and len(b) == n - len(a)
    assert not set(a) & set(b) and sorted(a + b) == list(range(n))
    assert a == sorted(a) and b == sorted(b)


def test_same_seed_same_split_other_seed_other_split():
    assert attack_split(40, 3) == attack_split(40, 3)
    assert attack_split(40, 3) != attack_split(40, 4)


def test_split_is_pinned():
    # numpy's PCG64 stream is the same on every platform: a trial, its target and its oracle, attacked in different
    # processes or on different machines, relearn on the same A and are measured on the same B.
    assert attack_split(10, 0) == ([2, 3, 4, 6, 7], [0, 1, 5, 8, 9])
    assert attack_split(7, 1) == ([0, 1, 4, 5], [2, 3, 6])


@pytest.mark.parametrize("n", [0, 1])
def test_a_forget_set_of_fewer_than_two_rows_is_refused(n):
    with pytest.raises(ValueError, match="at least 2 rows"):
        attack_split(n, 0)
