"""Refusal table: config files and `--set` values that are hostile YAML, non-finite or boolean numbers, counts
and seeds out of range, impossible tiny-model shapes and over-long names.

Each case writes a sweep file (`validate`) or a trial config (`run`) into the workspace, breaking one thing, and
`Workspace.refused` proves the refusal: exit 2, the fragments (file, field, allowed values) in the message, no
traceback, a short message, no Ray and nothing written.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from orchestrator.config_files import load_config
from orchestrator.sweep_config import load_sweep_config
from tests.refusals.harness import Workspace
from trainables.config import TrialConfig

Build = Callable[[Workspace], list[str]]

# Nine levels of nine aliases: 342 bytes that expand to 9**9 (387 million) strings.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi")
)
# The same in flow style, as one `--set` value.
FLOW_BOMB = "[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], " \
            "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]]"


def sweep_text(text: str | bytes) -> Build:
    """`validate` on a sweep file holding exactly `text`."""
    def build(ws: Workspace) -> list[str]:
        path = ws.root / "sweep.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["validate", str(path)]
    return build


def trial_text(text: str, *overrides: str) -> Build:
    """`run` on a trial config file holding exactly `text`, with `--set` overrides."""
    def build(ws: Workspace) -> list[str]:
        path = ws.root / "trial.yaml"
        path.write_text(text)
        return ["run", str(path), *[a for o in overrides for a in ("--set", o)]]
    return build


def nested(mapping: dict, dotted: str, value) -> dict:
    """`mapping` with `value` set at the dotted path (sections created as needed)."""
    node = mapping
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return mapping


def sweep_with(**paths) -> Build:
    """`validate` on the workspace's valid sweep with each dotted path (`__` for `.`) set to its value."""
    def build(ws: Workspace) -> list[str]:
        sweep = ws.sweep()
        for dotted, value in paths.items():
            nested(sweep, dotted.replace("__", "."), value)
        return ["validate", str(ws.write_sweep(sweep))]
    return build


def trial_with(**paths) -> Build:
    """`run` on the workspace's valid trial config with each dotted path (`__` for `.`) set to its value."""
    def build(ws: Workspace) -> list[str]:
        trial = ws.trial
        for dotted, value in paths.items():
            nested(trial, dotted.replace("__", "."), value)
        return ["run", str(ws.write_trial(trial))]
    return build


def trial_set(*overrides: str) -> Build:
    """`run` on the workspace's valid trial config with `--set` overrides."""
    def build(ws: Workspace) -> list[str]:
        return ["run", str(ws.write_trial()), *[a for o in overrides for a in ("--set", o)]]
    return build


CASES: dict[str, tuple[Build, list[str]]] = {
    # YAML
    "alias-bomb": (sweep_text(ALIAS_BOMB), ["sweep.yaml: line", "more than 100000 values once aliases are expanded"]),
    "alias-bomb-in-set": (trial_set(f"clreg.layer={FLOW_BOMB}"),
                          ["--set 'clreg.layer'", "more than 100000 values once aliases are expanded"]),
    "too-many-aliases": (sweep_text("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"),
                         ["sweep.yaml: line 2: more than 1000 aliases"]),
    "recursive-alias": (sweep_text("name: x\nbase: &b {model: *b}\n"),
                        ["sweep.yaml: line 2: alias *b refers to a node that contains it"]),
    "deep-nesting": (sweep_text("name: " + "[" * 400 + "]" * 400 + "\n"),
                     ["sweep.yaml: line 1: nested deeper than 50 levels"]),
    "deep-through-aliases": (
        sweep_text("".join(f"l{i}: &l{i} " + "[" * 10 + (f"*l{i - 1}" if i else "1") + "]" * 10 + "\n"
                           for i in range(8))),
        ["sweep.yaml: line", "nested deeper than 50 levels once aliases are expanded"]),
    "duplicate-key": (sweep_text("name: first\nsearch:\n  seed: 1\nname: second\n"),
                      ["sweep.yaml: line 4: duplicate key 'name' (first set at line 1)"]),
    "duplicate-nested-key": (trial_text("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n"),
                             ["trial.yaml: line 4: duplicate key 'lr' (first set at line 2)"]),
    "empty-file": (sweep_text(""), ["sweep.yaml: expected a mapping of sections", "got an empty file"]),
    "bare-scalar": (sweep_text("42\n"), ["sweep.yaml: expected a mapping of sections", "got 42"]),
    "bare-list": (trial_text("- data\n- model\n"), ["trial.yaml: expected a mapping of sections", "got ['data',"]),
    "not-utf8": (sweep_text(b"name: caf\xe9\n"), ["sweep.yaml: not UTF-8 text (byte 9"]),
    "too-large": (sweep_text("name: x\n" + "#" * 1_100_000 + "\n"), ["sweep.yaml: larger than 1 MB"]),
    "syntax-error": (sweep_text("name: x\nsearch: {seed: 1\n"), ["sweep.yaml: not valid YAML at line"]),
    "bad-set-yaml": (trial_set("clreg.tau=[1,"), ["--set 'clreg.tau': not valid YAML"]),
    "set-empty-section": (trial_set("clreg..tau=1"), ["--set 'clreg..tau=1': empty section name"]),
    # numbers
    "inf-tau": (sweep_with(base__clreg__tau=math.inf), ["sweep.yaml: base.clreg.tau: Input should be a finite number"]),
    "nan-lr": (trial_with(train__lr=math.nan), ["trial.yaml: train.lr: Input should be a finite number"]),
    "nan-unbounded-delta": (trial_set("method.delta=.nan"), ["method.delta: Input should be a finite number"]),
    "inf-space-high": (sweep_with(space={"parameters": {"clreg.tau": {"type": "float", "low": 0.1, "high": math.inf}}}),
                       ["parameter 'clreg.tau' (high): Input should be a finite number"]),
    "inf-space-choice": (sweep_with(space={"parameters": {"clreg.lambda": {"type": "categorical",
                                                                           "choices": [0.1, math.inf]}}}),
                         ["parameter 'clreg.lambda' (choices): choices must be finite numbers, got [inf]"]),
    "nan-fixed-value": (sweep_with(space={"fixed": {"clreg.tau": math.nan}}),
                        ["fixed value 'clreg.tau'", "Input should be a finite number"]),
    "true-epochs": (trial_with(train__epochs=True),
                    ["trial.yaml: train.epochs: expected a number, not a boolean (got true)"]),
    "true-space-low": (sweep_with(space={"parameters": {"train.epochs": {"type": "int", "low": True, "high": 4}}}),
                       ["parameter 'train.epochs'", "low: expected a number, not a boolean (got true)"]),
    "negative-seed": (sweep_with(search__seed=-1),
                      ["sweep.yaml: search.seed: Input should be greater than or equal to 0"]),
    "seed-2-40": (trial_with(train__seed=2**40),
                  ["trial.yaml: train.seed: Input should be less than or equal to 4294967295"]),
    "negative-trial-seed": (sweep_with(search__trial_seeds=[0, -3]),
                            ["search.trial_seeds.1", "greater than or equal to 0"]),
    "space-seed-2-40": (sweep_with(search__trial_seeds=None, space={"seeds": [0, 2**40]}),
                        ["seeds.1: Input should be less than or equal to 4294967295"]),
    "num-trials-1e12": (sweep_with(search__num_trials=10**12),
                        ["sweep.yaml: search.num_trials: Input should be less than or equal to 100000"]),
    "max-concurrent-5000": (sweep_with(search__max_concurrent=5000),
                            ["search.max_concurrent", "less than or equal to 1024"]),
    "unknown-search-order": (sweep_with(search__order="fifo"),
                             ["sweep.yaml: search.order", "'deterministic' or 'async'"]),
    "unknown-slots": (sweep_with(search__slots="hot"), ["sweep.yaml: search.slots", "'warm' or 'cold'"]),
    "warm-slots-searching-resources": (
        sweep_with(search__slots="warm",
                   space={"parameters": {"train.num_workers": {"type": "categorical", "choices": [1, 2]}}}),
        ["search.slots: warm needs every trial to ask for the same resources", "searches train.num_workers",
         "allowed: cold, or leave search.slots unset"]),
    "num-authors-1e6": (trial_set("data.benchmark=synthetic-tofu", "data.path=null",
                                  "data.synthetic.num_authors=1000000"),
                        ["data.synthetic.num_authors: Input should be less than or equal to 10000"]),
    "heads-do-not-divide": (trial_with(model__tiny__hidden_size=64, model__tiny__num_heads=5),
                            ["trial.yaml: model.tiny: hidden_size (64) must be a multiple of num_heads (5)"]),
    "two-oracle-references": (trial_with(prepare__oracle_path="oracle", prepare__oracle_logs="TOFU_EVAL.json"),
                              ["trial.yaml: prepare: oracle_path and oracle_logs both give the oracle reference"]),
    # names and shown values
    "sweep-name-300": (sweep_with(name="s" * 300), ["sweep.yaml: name: String should have at most 100 characters",
                                                    "(got 'sssss", "sss...sss"]),
    "long-value-shortened": (trial_with(data__benchmark="x" * 100_000), ["trial.yaml: data.benchmark: must be one of",
                                                                         "(got 'xxxxx", "xxx...xxx"]),
}
TIMED = {"alias-bomb", "alias-bomb-in-set", "too-many-aliases", "deep-nesting", "deep-through-aliases"}


@pytest.fixture(scope="module")
def commands_imported() -> None:
    """The commands import their modules (Ray Tune among them) on first use: do it here, outside the timed calls."""
    for module in ("orchestrator.sweep", "orchestrator.cluster", "orchestrator.preflight"):
        importlib.import_module(module)


@pytest.mark.parametrize(("build", "fragments"), CASES.values(), ids=CASES.keys())
def test_bad_config_input_is_refused(workspace, capsys, request, commands_imported, build: Build,
                                     fragments: list[str]) -> None:
    argv = build(workspace)
    start = time.monotonic()
    workspace.refused(argv, capsys, fragments)
    if request.node.callspec.id in TIMED:  # a behaviour bound (refused before expanding), not a benchmark
        assert time.monotonic() - start < 5


def test_home_is_expanded_and_numeric_strings_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    sweep_file = tmp_path / "sweep.yaml"
    # `1e-4` without a dot is a string to PyYAML; pydantic turns it into the float users mean.
    sweep_file.write_text("name: home\nstorage: {dir: ~/x}\n"
                          "base: {train: {lr: 1e-4}, prepare: {cache_dir: ~/cache}, output_dir: ~/runs}\n")
    assert yaml.safe_load(sweep_file.read_text())["base"]["train"]["lr"] == "1e-4"
    cfg = load_sweep_config(sweep_file, [])
    assert cfg.storage.dir == str(home / "x")
    assert cfg.base.prepare.cache_dir == str(home / "cache") and cfg.base.output_dir == str(home / "runs")
    assert cfg.base.train.lr == 0.0001
    assert not (tmp_path / "~").exists() and not home.exists()


def test_merge_keys_and_repeated_anchors_still_load(tmp_path: Path) -> None:
    """`<<: *base` overrides merged keys on purpose: not a duplicate; a few aliases are fine."""
    trial_file = tmp_path / "trial.yaml"
    trial_file.write_text("prepare: &p {lr: 0.02, epochs: 2}\ntrain:\n  <<: *p\n  epochs: 5\n")
    cfg = load_config(TrialConfig, trial_file, ["method.gamma=1e-1"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.prepare.epochs, cfg.method.gamma) == (0.02, 5, 2, 0.1)
