"""Which formulas the metrics use (`eval.definitions`), and the version recorded with every evaluation.

"open-unlearning" reproduces locuslab/open-unlearning's numbers on the same per-item inputs, epsilons and edge cases
included, so results compare with published tables; "exact" uses log-space forms that stay exact where
probabilities underflow (collapsed models) and the textbook edge cases. `shared/reference/unlearning-math.md`
("open-unlearning's numerics") and the README's metric table list where the two differ.
"""

from __future__ import annotations

from typing import Literal

OPEN_UNLEARNING = "open-unlearning"
EXACT = "exact"
Definitions = Literal["open-unlearning", "exact"]

# Bump a version when a change alters any number of that definition; saved with every evaluation so results
# computed under different formulas are never mixed silently.
DEFINITIONS_VERSION: dict[str, str] = {OPEN_UNLEARNING: "open-unlearning@d3d7cf9", EXACT: "exact@1"}

# open-unlearning's epsilon in its truth ratio, normalised probability, forget aggregate and PrivLeak.
OU_EPSILON = 1e-10


def check(definitions: str) -> str:
    """Return `definitions` if it names a definition set, else raise a ValueError listing the allowed ones."""
    if definitions not in DEFINITIONS_VERSION:
        raise ValueError(f"eval.definitions must be one of {', '.join(DEFINITIONS_VERSION)}; got {definitions!r}")
    return definitions
