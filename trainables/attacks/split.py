"""The relearning attack's split of the forget set: half A is relearned, half B is measured.

Recovery on B is only evidence of knowledge that came back if B was never shown during the attack, and it is only
comparable between the trial, its target and its oracle if all three are attacked on the same A and measured on
the same B: the split depends on nothing but (n, seed).
"""

from __future__ import annotations

import math

import numpy as np


def attack_split(n: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the attack half A and the held-out half B of `n` forget rows.

    A seeded permutation of range(n) (numpy's PCG64 `default_rng`, the same stream on every platform and process);
    A is its first ceil(n/2) entries and B the rest, each sorted so that the subsets keep the benchmark's order.

    Raises:
        ValueError: n < 2, which leaves B empty: nothing would be held out to measure recovery on.
    """
    if n < 2:
        raise ValueError(f"the relearning attack splits the forget set into two halves and needs at least 2 rows, "
                         f"got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    cut = math.ceil(n / 2)
    return sorted(int(i) for i in perm[:cut]), sorted(int(i) for i in perm[cut:])
