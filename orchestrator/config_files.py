"""Reading config files with `--set key=value` overrides into validated pydantic models.

Errors are reported as `ConfigError` naming the file, the dotted field and what is allowed, before anything runs.
Every YAML text (a file or a `--set` value) goes through `_BoundedLoader`, so a hostile or careless file is refused
in milliseconds with its line, never expanded into gigabytes or a RecursionError.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from trainables.config import BOOL_FOR_NUMBER, short_repr

M = TypeVar("M", bound=BaseModel)

MAX_CONFIG_BYTES = 1_000_000  # a config is a few KB; anything near this is not one
MAX_DEPTH = 50  # a sweep file nests about 6 levels; the composer recurses per level
MAX_ALIASES = 1000
MAX_NODES = 100_000  # nodes of the document with every alias expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and field."""


class _Refused(Exception):
    """A document refused by a limit of `_BoundedLoader`: the reason and the 1-based line it was found at."""

    def __init__(self, reason: str, mark: yaml.Mark | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = mark.line + 1 if mark is not None else None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that bounds a document's expanded size and depth and refuses duplicate keys.

    PyYAML shares an aliased node, so composing is linear in the text, but everything after it (pydantic, deep
    copies, error messages) walks the expanded tree: a few hundred bytes of nested aliases expand to billions of
    nodes. Each node's expanded size and height are computed as it is composed (an alias counts its target's),
    and a running total of expanded nodes is kept, so such a document, or a long flat one, is refused at the node
    that crosses a limit, before anything walks it. Duplicate keys are
    refused because YAML's last-wins would silently drop a setting.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._total = 0  # expanded nodes composed so far
        self._extent: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded height)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name)", event.start_mark)
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._extent:
                raise _Refused(f"alias *{event.anchor[:40]} refers to a node that contains it",
                               event.start_mark)
            if target is not None:
                self._count(self._extent[id(target)][0], event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, node.start_mark)
        _, height = self._extent[id(node)] = self._measure(node)
        if height > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels once aliases are expanded", node.start_mark)
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._total += nodes
        if self._total > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values once aliases are expanded", mark)

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """Expanded (size, height) of a node whose children are all composed, hence measured."""
        if isinstance(node, yaml.ScalarNode):
            return 1, 1
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        extents = [self._extent[id(child)] for child in children]
        return 1 + sum(s for s, _ in extents), 1 + max((h for _, h in extents), default=0)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *base` keys are overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # unhashable: SafeConstructor refuses it with its own message
                continue
            if first is not key_node:
                raise _Refused(f"duplicate key {short_repr(key, 60)} (first set at line {first.start_mark.line + 1})",
                               key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document through `_BoundedLoader`.

    Raises:
        ConfigError: `source: line N: reason` for a refused or malformed document.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise ConfigError(f"{source}: {f'line {e.line}: ' if e.line else ''}{e.reason}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {short_repr(str(e), 200)}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a config file into a mapping, refusing what cannot be a config with a message that names the file.

    Raises:
        ConfigError: the file is missing, unreadable, larger than `MAX_CONFIG_BYTES`, not UTF-8 (with the byte
            offset), not valid or refused YAML (see `_BoundedLoader`), or not a mapping at the top level.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES // 1_000_000} MB, too large to be a config file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                          "save the config file as UTF-8") from None
    data = parse_yaml(text, str(p))
    if not isinstance(data, dict):
        got = "an empty file" if data is None else short_repr(data, 60)
        raise ConfigError(f"{p}: expected a mapping of sections (data, model, method, ...) at the top level, "
                          f"got {got}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` set (value parsed as YAML: numbers, bools, lists)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        shown = short_repr(item, 80)
        if not sep or not key:
            raise ConfigError(f"--set {shown}: expected key=value, e.g. --set clreg.tau=0.5")
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"--set {shown}: empty section name in {short_repr(key, 80)}")
        value = parse_yaml(raw, f"--set {short_repr(key, 80)}")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {shown}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate `data` as `model`, turning pydantic's errors into one message per field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(e: ValidationError, source: str) -> str:
    """`source: field.path: message (got value)` lines, one per error, the value shortened."""
    lines = []
    for err in e.errors():
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        elif err["type"] == "value_error":
            msg = str(err["ctx"]["error"])
        shown = err["type"] != "missing" and not isinstance(err["input"], dict)
        got = f" (got {short_repr(err['input'])})" if shown else ""
        if err["type"] == BOOL_FOR_NUMBER:  # raised by the model for one of its fields: name that field
            field = ".".join(str(x) for x in (*err["loc"], err["ctx"]["key"]))
            msg, got = "expected a number, not a boolean", f" (got {err['ctx']['value']})"
        lines.append(f"{source}: {field}: {msg}{got}")
    return "\n".join(lines)


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Read `path` (or the embedded defaults when None), apply overrides and validate."""
    data = read_yaml(path) if path is not None else {}
    return validate(model, apply_overrides(data, overrides or []), str(path) if path else "defaults")
