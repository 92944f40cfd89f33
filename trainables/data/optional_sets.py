"""The data sets a benchmark may lack, and which metrics are missing without them.

Forget and retain are required (their loaders refuse data without them). Holdout and the evaluation sets are
optional: a benchmark without them still runs, with fewer metrics. `validate` lists what is absent so that a
missing number in a report is expected, not discovered.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.data.schema import Benchmark


@dataclass(frozen=True)
class OptionalSet:
    """What an absent optional set costs.

    Attributes:
        metrics: Registered metric names reported as missing without the set.
        note: What other metrics do instead, if anything.
    """

    metrics: tuple[str, ...]
    note: str = ""


MIA = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "privleak", "probe_recoverability")
OPTIONAL_SETS: dict[str, dict[str, OptionalSet]] = {
    "tofu": {
        "holdout": OptionalSet(MIA),
        "retain_perturbed": OptionalSet(
            ("retain_truth_ratio",), "retain_prob, retain_rouge and entanglement use the retain training split"),
        "real_authors": OptionalSet(("ra_prob", "ra_rouge", "ra_truth_ratio")),
        "world_facts": OptionalSet(("wf_prob", "wf_rouge", "wf_truth_ratio")),
    },
    "muse": {
        "holdout": OptionalSet(("mia_min_k", "privleak", "probe_recoverability")),
        "verbmem_forget": OptionalSet(("verbmem_rougeL_f1",)),
        "knowmem_forget": OptionalSet(("knowmem_forget_rougeL_f1",)),
        "knowmem_retain": OptionalSet(("knowmem_retain_rougeL_f1",)),
    },
}


def absent_sets(bench: Benchmark) -> dict[str, OptionalSet]:
    """The optional sets of `bench`'s family that it has no rows of, by name."""
    present = {"holdout": bench.holdout, **bench.eval_sets}
    return {name: spec for name, spec in OPTIONAL_SETS.get(bench.family, {}).items() if not present.get(name)}
