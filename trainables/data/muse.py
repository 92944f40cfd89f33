"""The MUSE loader: `muse-bench/MUSE-News` / `MUSE-Books` from the hub, or a local tree `{config}/{split}.json[l]`.

MUSE unlearns raw text, not QA pairs: the model trains on `raw/forget` against `raw/retain1` (or `retain2`), and is
scored on verbatim memorisation (`verbmem`: continue a prompt from the forget text) and knowledge memorisation
(`knowmem`: QA about the forget / retain text, prompted with in-context examples).

Chunking: MUSE joins the raw texts and cuts them into context-length pieces. Token-exact chunks need the model's
tokenizer, which a loader does not have, so the texts are cut into pieces of `max_length` whitespace-separated
words; encoding later truncates each piece to `max_length` tokens (a word is one token or more, so a piece's
tail may be cut off there). Whitespace inside a piece is normalised to single spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainables.config import DataConfig
from trainables.data.files import (
    find_split_file,
    hub_config_names,
    hub_records,
    hub_split_names,
    is_hub_name,
    locate_split_file,
    read_records,
    texts,
    to_examples,
)
from trainables.data.formatting import PLAIN_TEMPLATE
from trainables.data.schema import Benchmark, DataError, Example

MUSE_HUB = "muse-bench/MUSE-News"
RETAIN_SPLITS = ("retain1", "retain2")


class _Source:
    """MUSE splits by (config, split), from a local `{config}/{split}.json[l]` tree or a hub dataset."""

    def __init__(self, location: str) -> None:
        local = Path(location).expanduser()
        if local.is_dir():
            self.directory: Path | None = local
            self.label = str(local)
        elif is_hub_name(location):
            self.directory = None
            self.label = location
            self._configs = hub_config_names(location)
            self._splits: dict[str, list[str]] = {}
        else:
            raise DataError(f"MUSE data.path {location!r} is neither an existing directory nor a hub dataset name "
                            f"(owner/name, e.g. {MUSE_HUB} or muse-bench/MUSE-Books)")

    def has(self, config: str, split: str) -> bool:
        if self.directory is not None:
            return locate_split_file(self.directory, split, config) is not None
        if config not in self._configs:
            return False
        if config not in self._splits:
            self._splits[config] = hub_split_names(self.label, config)
        return split in self._splits[config]

    def read(self, config: str, split: str) -> tuple[list[dict], str]:
        """The rows of `config/split` and where they came from (for error messages)."""
        if self.directory is None:
            return hub_records(self.label, config, split), f"{self.label}:{config}/{split}"
        path = find_split_file(self.directory, split, config)
        return read_records(path), str(path)


def chunk_words(documents: Sequence[str], words_per_chunk: int) -> list[str]:
    """The documents joined and cut into consecutive pieces of `words_per_chunk` words (the last may be shorter)."""
    words = [w for doc in documents for w in doc.split()]
    return [" ".join(words[i: i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]


def _raw_chunks(source: _Source, split: str, max_length: int) -> list[Example]:
    rows, where = source.read("raw", split)
    chunks = chunk_words(texts(rows, where, "text"), max_length)
    if not chunks:
        raise DataError(f"{where}: no text to train on (split raw/{split} is empty)")
    return [Example(question="", answer=chunk, raw=True) for chunk in chunks]


def _verbmem(source: _Source) -> list[Example]:
    rows, where = source.read("verbmem", "forget")
    return [Example(question=prompt, answer=gt, raw=True)
            for prompt, gt in zip(texts(rows, where, "prompt"), texts(rows, where, "gt"))]


def _knowmem(source: _Source, kind: str) -> list[Example]:
    """knowmem QA of `kind` ("forget" / "retain"), prompted with the `*_icl` examples when they exist.

    With ICL the prompt is complete text (`Question: q\\nAnswer: a\\n\\n` blocks, then `Question: q\\nAnswer:`),
    so the example is raw and its answer carries the leading space the plain template puts before an answer.
    """
    questions = to_examples(*source.read("knowmem", f"{kind}_qa"))
    if not source.has("knowmem", f"{kind}_qa_icl"):
        return questions
    icl = to_examples(*source.read("knowmem", f"{kind}_qa_icl"))
    prefix = "".join(f"{PLAIN_TEMPLATE.format(question=e.question)} {e.answer}\n\n" for e in icl)
    return [Example(question=prefix + PLAIN_TEMPLATE.format(question=e.question), answer=" " + e.answer, raw=True)
            for e in questions]


def load_muse(cfg: DataConfig, name: str = "muse") -> Benchmark:
    """Load MUSE (or a local tree in its layout) as a `Benchmark`.

    Args:
        cfg: `path` is a local directory or a hub name (default `muse-bench/MUSE-News`); `retain_split` picks
            retain1 or retain2 (any other value, e.g. TOFU's default retain90, means retain1); `max_length` is
            the chunk size in words.
        name: The benchmark name to record.

    forget / retain / holdout are raw chunks (`raw=True`, empty question); holdout is chunked like forget so that
    membership inference compares sequences of the same form. Eval sets present in the source are loaded:
    "verbmem_forget", "knowmem_forget", "knowmem_retain".

    Raises:
        DataError: `raw/forget` or the retain split is missing or empty, or a file is malformed.
    """
    source = _Source(cfg.path or MUSE_HUB)
    retain_split = cfg.retain_split if cfg.retain_split in RETAIN_SPLITS else RETAIN_SPLITS[0]
    forget = _raw_chunks(source, "forget", cfg.max_length)
    retain = _raw_chunks(source, retain_split, cfg.max_length)
    holdout = _raw_chunks(source, "holdout", cfg.max_length) if source.has("raw", "holdout") else []
    eval_sets: dict[str, list[Example]] = {}
    if source.has("verbmem", "forget"):
        eval_sets["verbmem_forget"] = _verbmem(source)
    for kind in ("forget", "retain"):
        if source.has("knowmem", f"{kind}_qa"):
            eval_sets[f"knowmem_{kind}"] = _knowmem(source, kind)
    return Benchmark(name=name, family="muse", forget=forget, retain=retain, holdout=holdout, eval_sets=eval_sets,
                     source=source.label)
