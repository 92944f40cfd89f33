"""The shipped search-space presets: one YAML file per ablation in this directory, looked up by file stem.

Files are registered by path and parsed when loaded, so one broken file fails its own `load_preset` (and the test
that validates every preset) instead of every import of this module.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.space import SearchSpace
from trainables.registry import Registry

PRESET_DIR = Path(__file__).resolve().parent


def _register_shipped() -> Registry[Path]:
    registry: Registry[Path] = Registry("search-space preset")
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        registry.register(path.stem)(path)
    return registry


PRESETS = _register_shipped()


def load_preset(name: str) -> SearchSpace:
    """Parse and validate the preset `name` (e.g. "tau-ablation").

    Raises:
        UnknownNameError: when no preset has that name; the message lists the presets.
        SearchSpaceError: when the preset file is invalid.
    """
    return SearchSpace.from_yaml(PRESETS.get(name))
