"""The in-memory shape of a benchmark, shared by TOFU, MUSE and the synthetic generator.

Every loader returns a `Benchmark`; everything downstream (tokenisation, objectives, metrics) reads only this, so a
new benchmark is a new loader and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DataError(ValueError):
    """A benchmark file or split is missing, malformed or inconsistent (raised before any training)."""


@dataclass(frozen=True)
class Example:
    """One sequence: a question/answer pair (TOFU, MUSE knowmem) or a raw text (MUSE raw, verbmem).

    Attributes:
        question: The prompt. Empty for raw text. Loss is never taken on it.
        answer: The part the model is trained / scored on.
        paraphrased_answer: TOFU's paraphrase of `answer` (truth ratio numerator; CLReg paraphrase positives).
        perturbed_answer: TOFU's wrong answers (truth ratio denominator), >= 1 when present.
        raw: If True the question is used verbatim as a prefix (no Question/Answer or chat template): MUSE raw
            text and verbmem prompt/continuation pairs.
    """

    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answer: tuple[str, ...] = ()
    raw: bool = False


@dataclass
class Benchmark:
    """A loaded benchmark.

    Attributes:
        name: Benchmark name as registered (e.g. "synthetic-tofu", "tofu", "muse").
        family: "tofu" or "muse": which evaluation protocol applies.
        forget: The forget set unlearning trains on (TOFU: carries paraphrased/perturbed answers when the
            `*_perturbed` file exists).
        retain: The retain set unlearning trains on.
        holdout: Never trained on; the non-members of membership-inference attacks.
        eval_sets: Further evaluation sets by name. TOFU: "retain_perturbed", "real_authors", "world_facts";
            MUSE: "verbmem_forget", "knowmem_forget", "knowmem_retain".
        extra_train: Sequences that `prepare` trains both the target and the oracle on besides forget/retain
            (e.g. the synthetic world facts, which a model built from scratch does not know otherwise).
        source: Where it was read from (directory or hub name), for error messages and cache keys.
    """

    name: str
    family: str
    forget: list[Example]
    retain: list[Example]
    holdout: list[Example] = field(default_factory=list)
    eval_sets: dict[str, list[Example]] = field(default_factory=dict)
    extra_train: list[Example] = field(default_factory=list)
    source: str = ""


def require_paraphrases(bench: Benchmark) -> None:
    """Raise `DataError` unless every forget row of `bench` has a `paraphrased_answer` (CLReg's paraphrase
    positives), naming where the benchmark was read from."""
    missing = [i for i, e in enumerate(bench.forget) if not e.paraphrased_answer]
    if missing:
        raise DataError(f"{bench.source or bench.name}: clreg.positives=paraphrase needs paraphrased_answer on every "
                        f"forget row; {len(missing)} rows lack it (first: forget row {missing[0]}); allowed: "
                        f"positives=dropout, or a forget split with a *_perturbed file")
