"""Reading config files with `--set key=value` overrides into validated pydantic models.

Errors are reported as `ConfigError` naming the file, the dotted field and what is allowed, before anything runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and field."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (data, model, method, ...)")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` set (value parsed as YAML: numbers, bools, lists)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set clreg.tau=0.5")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate `data` as `model`, turning pydantic's errors into one message per field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(e: ValidationError, source: str) -> str:
    """`source: field.path: message (got value)` lines, one per error."""
    lines = []
    for err in e.errors():
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
        lines.append(f"{source}: {field}: {msg}{got}")
    return "\n".join(lines)


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Read `path` (or the embedded defaults when None), apply overrides and validate."""
    data = read_yaml(path) if path is not None else {}
    return validate(model, apply_overrides(data, overrides or []), str(path) if path else "defaults")
