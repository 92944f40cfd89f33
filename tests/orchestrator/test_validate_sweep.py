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
    assert "(sampler " in out[0]


def test_summary_names_the_methods_a_space_grids_over(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file()), "--preset", "method-compare"]) == 0
    out = capsys.readouterr().out
    assert "30 trials of graddiff, npo, simnpo, undial, pdu (every grid combination once)" in out


def test_pure_grid_preset_is_enumerated(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file()), "--preset", "tau-ablation"]) == 0
    assert "15 trials of simnpo (every grid combination once)" in capsys.readouterr().out


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
        ({"search__asha": True, "base__eval__every": 1}, "search.asha cannot stop a trial that averages 3 seeds"),
        ({"search__trial_seeds": []}, "search.trial_seeds"),
        ({"serach": {"num_trials": 3}}, "serach: unknown key"),
        ({"name": "bad name!"}, "name"),
        ({"base__clreg__layer": "last-12"}, "allowed: last-1..last-8"),
        ({"storage": {"dir": "/proc/clreg-sweeps"}}, "storage.dir /proc/clreg-sweeps: cannot create anything in /proc"),
        ({"search__max_trial_failures": -1}, "search.max_trial_failures"),
    ],
)
def test_invalid_sweeps_exit_2_naming_the_field(sweep_file, capsys, tmp_path, changes, expected):
    assert cli.main(["validate", str(sweep_file(**changes))]) == cli.EXIT_INVALID
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_storage_dir_under_a_file_is_refused(sweep_file, capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    assert cli.main(["validate", str(sweep_file(storage={"dir": str(tmp_path / "a-file" / "sweeps")}))]) == 2
    assert "a-file is a file, not a directory" in capsys.readouterr().err


def test_unreachable_mlflow_server_stops_the_sweep_before_ray_starts(sweep_file, capsys, tmp_path):
    """`sweep` (not only `validate`): the tracking store is checked before the cluster, the sweep dir or a trial."""
    import socket

    import ray

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = sweep_file(mlflow={"tracking_uri": f"http://127.0.0.1:{port}"})
    assert cli.main(["sweep", str(path)]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert f"MLflow tracking store http://127.0.0.1:{port} cannot be used" in err
    assert not ray.is_initialized() and not (tmp_path / "sweeps").exists()


def test_trial_tags_come_from_the_full_trial_config():
    from orchestrator.sweep import describe_trial
    from trainables.config import TrialConfig

    base = TrialConfig().model_dump(mode="json", by_alias=True)
    assert describe_trial({"clreg.tau": 0.3}, base) == {"method": "simnpo", "clreg": "on", "layer": "last-1",
                                                         "trust_remote_code": "false"}
    assert describe_trial({"clreg.layer": "last-4", "method.name": "npo"}, base)["layer"] == "last-4"
    assert describe_trial({"clreg.enabled": False, "method.name": "npo"}, base, seeds=[0, 1]) == {
        "method": "npo", "clreg": "off", "layer": "", "trust_remote_code": "false", "seeds": "0,1"}
    base["model"]["trust_remote_code"] = True
    assert describe_trial({}, base)["trust_remote_code"] == "true"
