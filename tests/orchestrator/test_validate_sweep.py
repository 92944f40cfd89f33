"""`clreg-sweep validate`: the sweep-level checks, refused before anything runs (no Ray, no files written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator import cli


@pytest.fixture
def sweep_file(tmp_path, monkeypatch, small_overrides):
    monkeypatch.chdir(tmp_path)
    cli.console.width = 400  # no line breaks inside the messages checked below

    def write(**changes) -> Path:
        base: dict = {"prepare": {"cache_dir": str(tmp_path / "cache")}}
        data = {"name": "t", "base": base, "storage": {"dir": str(tmp_path / "sweeps")}}
        for key, value in changes.items():
            node = data
            *parents, leaf = key.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def test_valid_sweep_prints_one_line_summary(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file())]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "valid" in out[0] and "8 trials" in out[0] and "clreg.tau" in out[0]


def test_pure_grid_preset_is_enumerated(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file()), "--preset", "tau-ablation"]) == 0
    assert "15 trials" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"search__sampler": "cmaes"}, "search.sampler"),
        ({"objectives": [{"metric": "forget_qualty", "mode": "max"}]}, "forget_qualty' is reported by no metric"),
        ({"objectives": [{"metric": "model_utility", "mode": "up"}]}, "objectives.0.mode"),
        ({"objectives": [{"metric": "model_utility"}, {"metric": "model_utility"}]}, "each metric may appear once"),
        ({"space": "tau-ablaton"}, "unknown search-space preset 'tau-ablaton'; allowed: clreg-default"),
        ({"space": {"parameters": {"model.dtype": {"type": "categorical", "choices": ["fp32", "bf16"]}}}},
         "model.dtype cannot be searched"),
        ({"search__sampler": "grid"}, "search.sampler=grid needs a space of grid parameters only"),
        ({"search__asha": True}, "search.asha needs base.eval.every=1"),
        ({"serach": {"num_trials": 3}}, "serach: unknown key"),
        ({"name": "bad name!"}, "name"),
        ({"base__clreg__layer": "last-12"}, "allowed: last-1..last-8"),
    ],
)
def test_invalid_sweeps_exit_2_naming_the_field(sweep_file, capsys, tmp_path, changes, expected):
    assert cli.main(["validate", str(sweep_file(**changes))]) == cli.EXIT_INVALID
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_trial_tags_come_from_the_full_trial_config():
    from orchestrator.sweep import describe_trial
    from trainables.config import TrialConfig

    base = TrialConfig().model_dump(mode="json", by_alias=True)
    assert describe_trial({"clreg.tau": 0.3}, base) == {"method": "simnpo", "clreg": "on", "layer": "last-1"}
    assert describe_trial({"clreg.layer": "last-4", "method.name": "npo"}, base)["layer"] == "last-4"
    assert describe_trial({"clreg.enabled": False, "method.name": "npo"}, base) == {
        "method": "npo", "clreg": "off", "layer": ""}
