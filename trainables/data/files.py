"""Reading benchmark files (JSON arrays or JSON Lines, local or from the hub) into validated `Example`s.

Every loader goes through these helpers, so a malformed file fails the same way whichever benchmark it belongs
to: with a `DataError` that names the file, the row and the field, before any model is loaded.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainables.data.schema import DataError, Example

SUFFIXES = (".json", ".jsonl")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# Fields that make a JSON object a row of some benchmark (TOFU's question/answer, MUSE's text and verbmem prompt/gt).
ROW_FIELDS = ("question", "answer", "text", "prompt", "gt")
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


# Characters of a value a message shows: enough to find the row, never a whole long text.
SHOWN_CHARS = 80


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def shortened(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`value` cut to `limit` characters (a string quoted, anything else as JSON), so that a message points at the
    row without printing all of it."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _found(value: Any) -> str:
    """What a message says was found instead of the expected value: its JSON type and the value shortened."""
    return "missing" if value is None else f"a JSON {_json_type(value)} {shortened(value)}"


def normalised(text: str) -> str:
    """`text` as a reader compares two questions: Unicode NFKC (full-width letters, ligatures, composed accents,
    non-breaking spaces), case folded, whitespace runs collapsed to one space, the ends stripped.

    Two rows equal under it are one row to the model as well (its tokenizer differs in a few tokens at most), so
    the overlap and duplicate checks compare these forms, not the raw strings.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def read_records(path: Path) -> list[dict]:
    """The rows of a `.json` (array of objects, or JSON Lines) or `.jsonl` file.

    `datasets.Dataset.to_json` writes JSON Lines even to a `.json` name, so a `.json` file that is not one JSON
    document is read as JSON Lines.

    Raises:
        DataError: the file is unreadable, not JSON, not a list of objects, or has no rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the file ({e})") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty, expected JSON rows with fields such as 'question', 'answer'")
    records = _parse_lines(text, path) if path.suffix == ".jsonl" else _parse_document(text, path)
    if not records:
        raise DataError(f"{path}: no rows (an empty JSON array)")
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} is {_found(row)}, expected an object of fields such as "
                            "'question', 'answer'")
    return records


def _parse_document(text: str, path: Path) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return _parse_lines(text, path)
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if isinstance(data, dict):
        _refuse_wrapped_rows(data, path)
        return [data]  # a one-row JSON Lines file
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of row objects or JSON Lines, got a JSON {_json_type(data)}")
    return data


def _refuse_wrapped_rows(data: dict, path: Path) -> None:
    """Refuse a JSON object that holds rows instead of being one (a one-row file is one object of fields).

    Columns (an object of lists), rows keyed by id and rows under one field (`{"data": [...]}`) would otherwise be
    read as a single row and refused for a missing 'question', which names the wrong problem. An object with a
    row's fields is a row, whatever its values: the row checks then name the field that is wrong.
    """
    expected = f"{path}: expected a JSON array of row objects or JSON Lines"
    values = list(data.values())
    if values and all(isinstance(v, list) for v in values):
        raise DataError(f"{expected}, found column-oriented JSON (an object of {len(values)} lists, fields "
                        f"{', '.join(shortened(k) for k in list(data)[:3])}); write one object per row")
    if any(field in data for field in ROW_FIELDS):
        return
    if values and all(isinstance(v, dict) for v in values):
        keys = ", ".join(shortened(k) for k in list(data)[:3])
        raise DataError(f"{expected}, found a JSON object of {len(values)} objects keyed by {keys}"
                        f"{', ...' if len(values) > 3 else ''}; write its values as a JSON array")
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            raise DataError(f"{expected}, found a JSON object whose field {shortened(key)} holds a list of "
                            f"{len(value)} objects; write that list as the whole file")


def _parse_lines(text: str, path: Path) -> list:
    # split on "\n" only: str.splitlines would also split on U+2028 etc., which JSON strings may hold unescaped.
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno} is not valid JSON (column {e.colno}: {e.msg})") from None
    return rows


def locate_split_file(directory: Path, split: str, config: str | None = None) -> Path | None:
    """`{config}/{split}.json` or `.jsonl` under `directory` (no `config`: directly in it), or None if absent.

    Raises:
        DataError: both a `.json` and a `.jsonl` file exist, so which one is meant is ambiguous.
    """
    base = Path(directory) / config if config else Path(directory)
    found = [base / f"{split}{suffix}" for suffix in SUFFIXES if (base / f"{split}{suffix}").is_file()]
    if len(found) > 1:
        raise DataError(f"both {found[0]} and {found[1]} exist; keep one of them")
    return found[0] if found else None


def find_split_file(directory: Path, split: str, config: str | None = None) -> Path:
    """Like `locate_split_file`, but a missing file is an error listing the data files that do exist.

    Raises:
        DataError: no file for the split.
    """
    path = locate_split_file(directory, split, config)
    if path is None:
        name = f"{config}/{split}" if config else split
        raise DataError(f"no file for split {name!r} in {directory}: tried {name}.json and {name}.jsonl; "
                        f"data files there: {', '.join(list_data_files(directory)) or 'none'}")
    return path


def list_data_files(directory: Path) -> list[str]:
    """Relative paths of the JSON/JSONL files in `directory` and its immediate subdirectories, sorted."""
    directory = Path(directory)
    files = [p for pattern in ("*", "*/*") for p in directory.glob(pattern) if p.suffix in SUFFIXES and p.is_file()]
    return sorted(p.relative_to(directory).as_posix() for p in files)


def available_splits(directory: Path, config: str | None = None) -> list[str]:
    """Split names (file stems) of the JSON/JSONL files in `directory` or its `config` subdirectory, sorted."""
    base = Path(directory) / config if config else Path(directory)
    return sorted({p.stem for p in base.glob("*") if p.suffix in SUFFIXES and p.is_file()})


def is_hub_name(location: str) -> bool:
    """Whether `location` looks like a hub dataset name (`owner/name`) rather than a filesystem path."""
    return _HUB_NAME.fullmatch(location) is not None


def _hub_error(name: str, what: str, error: Exception) -> DataError:
    return DataError(f"{name!r} is not a local directory, and loading {what} of it as a hub dataset failed "
                     f"({type(error).__name__}: {error}); without network access, point data.path at a local "
                     "directory of JSON/JSONL files")


def hub_config_names(name: str) -> list[str]:
    """The configs of hub dataset `name` (imports `datasets` only when a hub name is used)."""
    import datasets

    try:
        return list(datasets.get_dataset_config_names(name))
    except Exception as e:  # network, authentication, unknown name: all reported the same way
        raise _hub_error(name, "the config names", e) from e


def hub_split_names(name: str, config: str) -> list[str]:
    """The splits of config `config` of hub dataset `name`."""
    import datasets

    try:
        return list(datasets.get_dataset_split_names(name, config))
    except Exception as e:
        raise _hub_error(name, f"the splits of config {config!r}", e) from e


def hub_records(name: str, config: str, split: str) -> list[dict]:
    """The rows of `split` of config `config` of hub dataset `name`, as plain dicts."""
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split).to_list()
    except Exception as e:
        raise _hub_error(name, f"{config}/{split}", e) from e


def _text(row: dict, field: str, file: str | Path, index: int, required: bool = True) -> str:
    value = row.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{file}: row {index}: field {field!r} must be a string, got {_found(value)}")
    if required and not value.strip():
        raise DataError(f"{file}: row {index}: field {field!r} is empty")
    return value


def texts(records: Sequence[dict], file: str | Path, field: str) -> list[str]:
    """The non-empty string `field` of every row (MUSE `text`, `prompt`, `gt`).

    Raises:
        DataError: a row lacks the field or it is empty or not a string (names file, row and field).
    """
    return [_text(row, field, file, i) for i, row in enumerate(records)]


def _perturbed(row: dict, file: str | Path, index: int, need: bool) -> tuple[str, ...]:
    value = row.get("perturbed_answer")
    if value is None:
        if need:
            raise DataError(f"{file}: row {index}: field 'perturbed_answer' is missing "
                            "(this split is scored by the truth ratio, which needs wrong answers)")
        return ()
    if isinstance(value, str):  # some dumps store a single wrong answer as a string
        value = [value]
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else _found(value)
        raise DataError(f"{file}: row {index}: field 'perturbed_answer' must be a non-empty list of strings, "
                        f"got {got}")
    for j, wrong in enumerate(value):
        if not isinstance(wrong, str) or not wrong.strip():
            got = "an empty string" if isinstance(wrong, str) else _found(wrong)
            raise DataError(f"{file}: row {index}: field 'perturbed_answer' item {j} is empty or not a string: "
                            f"expected a non-empty string, got {got}")
    return tuple(value)


def to_examples(records: Sequence[dict], file: str | Path, require: Sequence[str] = ("question", "answer"),
                need_perturbed: bool = False) -> list[Example]:
    """Validate TOFU-schema rows and turn them into `Example`s.

    Args:
        records: Rows with `question`, `answer` and optionally `paraphrased_answer`, `perturbed_answer`.
        file: The file (or hub config) they came from, named in error messages.
        require: Of `question` and `answer`, the fields that must be non-empty strings; one not listed may be
            absent (then "").
        need_perturbed: The split is scored by the truth ratio, so every row must carry `perturbed_answer`.

    A row with wrong answers but no `paraphrased_answer` (TOFU's real-authors / world-facts rows) takes its
    `answer` as the correct one, as the truth ratio of those sets does.

    Raises:
        DataError: a required field is missing or empty, or `perturbed_answer` is empty or malformed.
    """
    examples = []
    for i, row in enumerate(records):
        question = _text(row, "question", file, i, required="question" in require)
        answer = _text(row, "answer", file, i, required="answer" in require)
        perturbed = _perturbed(row, file, i, need_perturbed)
        if row.get("paraphrased_answer") is not None:
            paraphrased: str | None = _text(row, "paraphrased_answer", file, i)
        else:
            paraphrased = answer if perturbed else None
        examples.append(Example(question=question, answer=answer, paraphrased_answer=paraphrased,
                                perturbed_answer=perturbed))
    return examples


def refuse_duplicates(examples: Sequence[Example], file: str | Path) -> None:
    """Refuse a split in which two rows are the same question and answer (compared `normalised`).

    A repeated row is trained on twice and weighs twice in every metric of the split. The key is question AND
    answer: TOFU's real retain90/95/99 ask "What is the full name of the author?" of two different authors, and
    none of its real files repeats a question with its answer (checked on all of them), so real TOFU loads.

    Raises:
        DataError: naming the file, both rows (0-based, as in every data message) and the question shortened.
    """
    first: dict[tuple[str, str], int] = {}
    for i, e in enumerate(examples):
        key = (normalised(e.question), normalised(e.answer))
        if key in first:
            raise DataError(f"{file}: rows {first[key]} and {i} are the same question and answer (compared after "
                            f"normalising case, Unicode and whitespace): {shortened(e.question)}; keep one of them "
                            f"(a repeated row is trained on and scored twice)")
        first[key] = i
