"""The TOFU loader: `locuslab/TOFU` from the hub, or a local directory of its configs as JSON / JSON Lines files.

TOFU publishes each split as its own config (`forget10`, `retain90`, `forget10_perturbed`, ...), each with one
`train` split; local copies name the files after the configs (`forget10.json`). Both are read the same way here.
The synthetic generator writes this layout too, so this loader serves `synthetic-tofu` as well.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainables.config import DataConfig
from trainables.data import synthetic_tofu
from trainables.data.files import (
    available_splits,
    find_split_file,
    hub_config_names,
    hub_records,
    is_hub_name,
    normalised,
    read_records,
    refuse_duplicates,
    shortened,
    to_examples,
)
from trainables.data.schema import Benchmark, DataError, Example

TOFU_HUB = "locuslab/TOFU"
TOFU_SPLITS = {
    "forget": ("forget01", "forget05", "forget10"),
    "retain": ("retain90", "retain95", "retain99"),
    "holdout": ("holdout01", "holdout05", "holdout10"),
}
# Benchmark.eval_sets key -> TOFU config; each is loaded when present and simply absent otherwise.
EVAL_SETS = {
    "retain_perturbed": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}
# Fields a `{forget}_perturbed` config adds to the rows of `{forget}`.
PERTURBED_FIELDS = ("paraphrased_answer", "perturbed_answer", "paraphrased_question")


class _Source:
    """TOFU configs by name, from a local directory or a hub dataset."""

    def __init__(self, location: str) -> None:
        local = Path(location).expanduser()
        if local.is_dir():
            self.directory: Path | None = local
            self.configs = available_splits(local)
        elif is_hub_name(location):
            self.directory = None
            self.configs = hub_config_names(location)
        else:
            raise DataError(f"TOFU data.path {location!r} is neither an existing directory nor a hub dataset name "
                            f"(owner/name, e.g. {TOFU_HUB})")
        self.label = str(local) if self.directory else location

    def has(self, config: str) -> bool:
        return config in self.configs

    def read(self, config: str) -> tuple[list[dict], str]:
        """The rows of `config` and where they came from (for error messages)."""
        if self.directory is None:
            return hub_records(self.label, config, "train"), f"{self.label}:{config}"
        path = find_split_file(self.directory, config)
        return read_records(path), str(path)

    def is_synthetic(self) -> bool:
        """Whether the synthetic generator wrote this directory (per its manifest)."""
        return self.directory is not None and synthetic_tofu.read_manifest(self.directory) is not None


def _require(source: _Source, kind: str, split: str) -> None:
    if source.has(split):
        return
    present = [c for c in source.configs if re.fullmatch(rf"{kind}\d+", c)]
    optional = " or to null to run without MIA and PrivLeak" if kind == "holdout" else ""
    raise DataError(f"no {kind} split {split!r} in {source.label}; {kind} splits present there: "
                    f"{', '.join(present) or 'none'} (TOFU's are {', '.join(TOFU_SPLITS[kind])}); "
                    f"set data.{kind}_split to one of them{optional}")


def _merge_perturbed(rows: list[dict], extra: list[dict], where: str, extra_where: str) -> list[dict]:
    """`rows` with the paraphrased/perturbed fields of the `extra` row of the same question."""
    by_question = {r.get("question"): r for r in extra}
    if not any(r.get("question") in by_question for r in rows):
        raise DataError(f"{extra_where} shares no question with {where}: they are not the same split")
    merged = []
    for row in rows:
        match = by_question.get(row.get("question"), {})
        merged.append({**row, **{k: match[k] for k in PERTURBED_FIELDS if k in match}})
    return merged


def _examples(rows: list[dict], where: str, need_perturbed: bool = False) -> list[Example]:
    """One split's validated rows, a repeated row refused (see `refuse_duplicates`)."""
    examples = to_examples(rows, where, need_perturbed=need_perturbed)
    refuse_duplicates(examples, where)
    return examples


def _forget(source: _Source, split: str) -> tuple[list[Example], str]:
    """The forget split's rows and where they came from."""
    _require(source, "forget", split)
    rows, where = source.read(split)
    if source.has(f"{split}_perturbed"):
        extra, extra_where = source.read(f"{split}_perturbed")
        rows = _merge_perturbed(rows, extra, where, extra_where)
        where = f"{where} (+ {extra_where})"
    return _examples(rows, where), where


def _holdout(source: _Source, split: str | None) -> list[Example]:
    """The holdout split `data.holdout_split` names; none when it is null (no MIA / PrivLeak then, by choice).

    A configured split that is missing is an error, also when the data has no holdout files at all: otherwise
    MIA and PrivLeak would go missing from every trial without anyone having asked for that.
    """
    if split is None:
        return []
    _require(source, "holdout", split)
    return _examples(*source.read(split))


def _check(forget: list[Example], forget_where: str, retain: list[Example], retain_where: str,
           cfg: DataConfig) -> None:
    """Refuse an empty forget split, and forget and retain splits that ask the same question.

    Questions are compared `normalised`: one that differs only in case, spacing or a Unicode variant of a letter is
    the same question to the model, and training to forget and to retain it at once measures nothing.
    """
    if not forget:
        raise DataError(f"{forget_where}: the forget split {cfg.forget_split!r} has no rows")
    retain_rows = {}
    for j, e in enumerate(retain):
        retain_rows.setdefault(normalised(e.question), j)
    shared = [(i, retain_rows[q]) for i, q in enumerate(normalised(e.question) for e in forget) if q in retain_rows]
    if shared:
        i, j = shared[0]
        raise DataError(f"{len(shared)} question(s) of forget split {cfg.forget_split!r} are also in retain split "
                        f"{cfg.retain_split!r} (compared after normalising case, Unicode and whitespace), e.g. "
                        f"{forget_where} row {i} and {retain_where} row {j}: {shortened(forget[i].question)}; use "
                        "matching splits (forget01/retain99, forget05/retain95, forget10/retain90)")


def _limit(rows: list[Example], limit: int | None, field: str, split: str, label: str) -> None:
    """Refuse a `data.<field>` larger than its split: clipping would silently run on fewer rows than asked for."""
    if limit is not None and limit > len(rows):
        raise DataError(f"data.{field}={limit} is larger than the {split!r} split of {label} ({len(rows)} rows); "
                        f"allowed: 1..{len(rows)}, or null for all rows")


def _retain_subset(retain: list[Example], evaluated: list[Example], limit: int) -> list[Example]:
    """The first `limit` retain rows, taking the rows TOFU evaluates (`evaluated`, i.e. retain_perturbed) first.

    Rows are matched on question and answer, not the question alone: retain99 asks "What is the full name of the
    author?" twice, of two authors. Each group keeps its file order, so the subset is the same on every call.
    """
    keys = {(e.question, e.answer) for e in evaluated}
    first = [e for e in retain if (e.question, e.answer) in keys]
    return (first + [e for e in retain if (e.question, e.answer) not in keys])[:limit]


def _apply_limits(forget: list[Example], retain: list[Example], eval_sets: dict[str, list[Example]],
                  cfg: DataConfig, label: str) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """The deterministic subset `data.forget_limit` / `data.retain_limit` ask for (see `load_tofu`)."""
    _limit(forget, cfg.forget_limit, "forget_limit", cfg.forget_split, label)
    _limit(retain, cfg.retain_limit, "retain_limit", cfg.retain_split, label)
    if cfg.forget_limit is not None:
        forget = forget[:cfg.forget_limit]
    if cfg.retain_limit is None:
        return forget, retain, eval_sets
    evaluated = eval_sets.get("retain_perturbed", [])
    retain = _retain_subset(retain, evaluated, cfg.retain_limit)
    if evaluated:
        kept = {(e.question, e.answer) for e in retain}
        cut = [e for e in evaluated if (e.question, e.answer) in kept]
        if not cut:
            raise DataError(f"retain_perturbed of {label} shares no question/answer with retain split "
                            f"{cfg.retain_split!r}: they are not the same split")
        eval_sets = {**eval_sets, "retain_perturbed": cut}
    return forget, retain, eval_sets


def load_tofu(cfg: DataConfig, name: str = "tofu") -> Benchmark:
    """Load TOFU (or a directory in its layout) as a `Benchmark`.

    Args:
        cfg: `path` is a local directory or a hub name (default `locuslab/TOFU`); the split names pick the forget,
            retain and holdout configs.
        name: The benchmark name to record (`synthetic-tofu` reuses this loader).

    The forget rows take `paraphrased_answer` / `perturbed_answer` from `{forget_split}_perturbed` when it
    exists (matched by question). `extra_train` holds the world-facts and real-authors rows only for data the
    synthetic generator wrote: their facts are invented, so no model knows them otherwise. On real TOFU a
    pretrained model knows them; a model built from scratch does not, and the trainer adds them for it
    (`trainables.engine.recipes.finetune.finetune_extra`).

    `data.forget_limit` / `data.retain_limit` cut a deterministic subset for CPU runs: the first N forget rows;
    N retain rows, those of retain_perturbed (the retain questions TOFU evaluates) first, then the others, each in
    file order; retain_perturbed is then cut to the rows kept, so every retain row evaluated was trained on. The
    overlap check runs on the whole splits.

    Raises:
        DataError: a forget/retain split, or a holdout split that is not null, is missing (the message lists the
            names allowed), a file is malformed, the forget split is empty, a split repeats a row, forget and
            retain share questions (compared normalised), or a limit is larger than its split.
    """
    source = _Source(cfg.path or TOFU_HUB)
    forget, forget_where = _forget(source, cfg.forget_split)
    _require(source, "retain", cfg.retain_split)
    retain_rows, retain_where = source.read(cfg.retain_split)
    retain = _examples(retain_rows, retain_where)
    _check(forget, forget_where, retain, retain_where, cfg)
    eval_sets = {key: _examples(*source.read(config), need_perturbed=True)
                 for key, config in EVAL_SETS.items() if source.has(config)}
    forget, retain, eval_sets = _apply_limits(forget, retain, eval_sets, cfg, source.label)
    extra_train = (eval_sets.get("world_facts", []) + eval_sets.get("real_authors", [])
                   if source.is_synthetic() else [])
    return Benchmark(name=name, family="tofu", forget=forget, retain=retain,
                     holdout=_holdout(source, cfg.holdout_split), eval_sets=eval_sets, extra_train=extra_train,
                     source=source.label)
