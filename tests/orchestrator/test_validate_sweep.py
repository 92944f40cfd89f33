"""`clreg-sweep validate`: the sweep-level checks, refused before anything runs (no Ray, no files written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator import cli


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 10_000)  # no line breaks inside the messages checked below


@pytest.fixture
def sweep_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

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


def test_valid_sweep_prints_a_summary_with_the_rows_truncated(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file())]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "valid" in out[0] and "8 trials" in out[0] and "clreg.tau" in out[0]
    assert "(sampler " in out[0]
    assert out[1].startswith("trials run on warm slots (every trial asks for the same resources; a slot is replaced "
                             "after 50 trials or 2 GB")
    assert out[2] == ("data: rows truncated at data.max_length=128 (counted with the tiny-llama tokenizer prepare "
                      "trains on the benchmark text):")
    # the default synthetic benchmark: every set present, nothing truncated
    assert [line.split(":")[0].strip() for line in out[3:]] == ["forget", "retain", "holdout", "retain_perturbed",
                                                                "real_authors", "world_facts"]
    assert out[4].startswith("  retain: 0 of 144 rows (0.0%); longest ")


@pytest.mark.parametrize(("slots", "expected"), [
    (None, "trials run on cold slots (the space searches train.cpus_per_worker, so trials ask for different "
           "resources)"),
    ("cold", "trials run on cold slots (search.slots: cold: one Ray Train run per trial)"),
])
def test_a_space_that_searches_resources_runs_cold(sweep_file, capsys, slots, expected):
    space = {"parameters": {"clreg.tau": {"type": "float", "low": 0.1, "high": 1.0},
                            "train.cpus_per_worker": {"type": "categorical", "choices": [1, 2]}}}
    search = {"slots": slots} if slots else {}
    assert cli.main(["validate", str(sweep_file(space=space, search=search))]) == 0
    assert expected in capsys.readouterr().out


def test_summary_names_the_methods_a_space_grids_over(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file()), "--preset", "method-compare"]) == 0
    out = capsys.readouterr().out
    assert ("66 trials of gradascent, graddiff, npo, simnpo, undial, pdu, wga, satimp, ceu, rmu, dpo (every grid "
            "combination once)") in out


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
        ({"search__early_stopping__enabled": True}, "search.early_stopping needs base.eval.every=1"),
        ({"search__early_stopping__enabled": True, "base__eval__every": 1},
         "search.early_stopping cannot stop a trial that averages 3 seeds"),
        ({"search__early_stopping__enabled": True, "base__eval__every": 1, "search__trial_seeds": [0],
          "base__train__epochs": 2, "search__early_stopping__grace_epochs": 2},
         "grace_epochs 2 leaves no epoch to stop at: allowed 1 .. 1"),
        ({"search__candidates": "epochs"}, "search.candidates: epochs needs base.eval.every between 1 and 2"),
        ({"search__candidates": "epochs", "base__eval__every": 1},
         "search.candidates: epochs takes each epoch of one seed, and the space averages 3 seeds"),
        ({"search__candidates": "epochs", "base__eval__every": 1, "search__trial_seeds": [0],
          "base__attack__when": "front"}, "base.attack.when: front attacks the front's final models"),
        ({"search__trial_value": "best_hv"}, "search.trial_value best_hv picks among a trial's epoch candidates"),
        ({"search__candidates": "epochs", "search__trial_value": "first_at_oracle"},
         "search.selection_metric is what trial_value: first_at_oracle compares with the oracle: give both"),
        ({"search__candidates": "epochs", "base__eval__every": 1, "search__trial_seeds": [0],
          "search__trial_value": "first_at_oracle", "search__selection_metric": "forget_rogue"},
         "search.selection_metric 'forget_rogue' is reported by no metric"),
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
    from orchestrator.trial_record import build_record
    from orchestrator.trial_record import describe_trial as tags_of
    from trainables.config import TrialConfig

    def describe_trial(params: dict, base: dict, seeds: list[int] = ()) -> dict[str, str]:
        return tags_of(build_record("t", base, params, seeds, num_layers=8))

    base = TrialConfig().model_dump(mode="json", by_alias=True)
    assert describe_trial({"clreg.tau": 0.3}, base) == {"method": "simnpo", "clreg": "on", "layer": "last-1",
                                                         "trust_remote_code": "false"}
    assert describe_trial({"clreg.layer": "last-4", "method.name": "npo"}, base)["layer"] == "last-4"
    assert describe_trial({"clreg.enabled": False, "method.name": "npo"}, base, seeds=[0, 1]) == {
        "method": "npo", "clreg": "off", "layer": "", "trust_remote_code": "false", "seeds": "0,1"}
    base["model"]["trust_remote_code"] = True
    assert describe_trial({}, base)["trust_remote_code"] == "true"


REAL_TOFU = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tofu"


@pytest.fixture
def real_tofu_sweep(sweep_file):
    if not (REAL_TOFU / "retain99.json").is_file():
        pytest.skip(f"real TOFU files not found at {REAL_TOFU}")

    def write(**changes) -> Path:
        data = {"benchmark": "tofu", "path": str(REAL_TOFU), "forget_split": "forget01", "retain_split": "retain99",
                "holdout_split": None}
        return sweep_file(base__data={**data, **changes})

    return write


def _words(text: str) -> str:
    return " ".join(text.split())


def test_real_tofu_at_128_tokens_is_refused_with_the_counts(real_tofu_sweep, capsys, tmp_path):
    assert cli.main(["validate", str(real_tofu_sweep())]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "data.max_length=128 truncates more than data.max_truncated=0.05 (5%) of the rows of forget, retain, " \
           "retain_perturbed" in err
    assert "forget: 7 of 40 rows (17.5%), 21 (52.5%) with paraphrased/perturbed answers; longest 192 tokens" in err
    assert "retain: 583 of 3960 rows (14.7%); longest 267 tokens" in err
    assert "set data.max_length=174 (truncates at most 5% of every split) or 267 (none)" in err
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "cache").exists()


def test_real_tofu_counts_and_absent_holdout_are_in_the_summary(real_tofu_sweep, capsys):
    assert cli.main(["validate", str(real_tofu_sweep(max_truncated=1.0))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  retain: 583 of 3960 rows (14.7%); longest 267 tokens" in out
    assert "  real_authors: 0 of 100 rows (0.0%), 0 (0.0%) with paraphrased/perturbed answers; longest 64 tokens" in out
    assert ("absent: holdout (data.holdout_split: null): mia_loss, mia_zlib, mia_min_k, mia_min_k_plus_plus, "
            "privleak, probe_recoverability will be missing") in out


def test_a_configured_holdout_split_that_is_missing_is_refused(real_tofu_sweep, capsys):
    assert cli.main(["validate", str(real_tofu_sweep(holdout_split="holdout01"))]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert "no holdout split 'holdout01'" in err and "holdout splits present there: none" in err
    assert "set data.holdout_split to one of them or to null to run without MIA and PrivLeak" in err


def _base_sweep(tmp_path: Path, base: str, trial: dict | None = None) -> Path:
    """`sweeps/s.yaml` with `base: <base>`, and `trial` written to `sweeps/configs/trial.yaml`."""
    (tmp_path / "sweeps" / "configs").mkdir(parents=True)
    if trial is not None:
        (tmp_path / "sweeps" / "configs" / "trial.yaml").write_text(yaml.safe_dump(trial))
    path = tmp_path / "sweeps" / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "from-file", "base": base, "storage": {"dir": str(tmp_path / "out")}}))
    return path


TRIAL = {"model": {"tiny": {"num_layers": 4}}, "train": {"lr": 3e-4}}


def test_base_file_relative_to_the_sweep_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the sweep file's directory: the path is read relative to that
    path = _base_sweep(tmp_path, "configs/trial.yaml",
                       {**TRIAL, "prepare": {"cache_dir": str(tmp_path / "cache")}})
    assert cli.main(["validate", str(path)]) == 0
    assert "(4-layer tiny-llama)" in capsys.readouterr().out
    assert cli.main(["validate", str(path), "--set", "base.model.tiny.num_layers=6"]) == 0
    assert "(6-layer tiny-llama)" in capsys.readouterr().out


def test_base_file_is_inlined_in_the_saved_sweep_file(tmp_path):
    """The sweep directory's copy holds the whole base, so `resume` and `report` read it without the base file."""
    from orchestrator.sweep import _create_sweep_dir, load_sweep_dir, sweep_paths
    from orchestrator.sweep_config import load_sweep_config

    path = _base_sweep(tmp_path, str(tmp_path / "sweeps" / "configs" / "trial.yaml"), TRIAL)  # absolute
    cfg = load_sweep_config(path, ["base.train.epochs=2"])
    assert (cfg.base.model.tiny.num_layers, cfg.base.train.lr, cfg.base.train.epochs) == (4, 3e-4, 2)
    paths = sweep_paths(cfg)
    _create_sweep_dir(paths, cfg)
    (tmp_path / "sweeps" / "configs" / "trial.yaml").unlink()
    assert yaml.safe_load(paths.sweep_file.read_text())["base"]["train"]["lr"] == 3e-4
    assert load_sweep_dir(paths.root) == cfg


def test_missing_base_file_is_refused(tmp_path, capsys):
    path = _base_sweep(tmp_path, "configs/nope.yaml")
    assert cli.main(["validate", str(path)]) == cli.EXIT_INVALID
    err = _words(capsys.readouterr().err)
    assert f"{path}: base: no trial config file {tmp_path / 'sweeps' / 'configs' / 'nope.yaml'}" in err
    assert "relative to " + str(tmp_path / "sweeps") in err


@pytest.mark.parametrize(("trial", "expected"), [
    ({"train": {"lr": -1}}, "train.lr: Input should be greater than 0 (got -1)"),
    ({"trian": {"epochs": 1}}, "trian: unknown key (typo?)"),
])
def test_bad_field_in_the_base_file_names_that_file(tmp_path, capsys, trial, expected):
    path = _base_sweep(tmp_path, "configs/trial.yaml", trial)
    assert cli.main(["validate", str(path)]) == cli.EXIT_INVALID
    assert f"{tmp_path / 'sweeps' / 'configs' / 'trial.yaml'}: {expected}" in _words(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_rmu_layer_ablation_drops_layers_the_model_lacks_and_a_fixed_rmu_layer_must_exist(sweep_file, capsys):
    assert cli.main(["validate", str(sweep_file()), "--preset", "rmu-layer-ablation"]) == 0
    assert "24 trials of rmu (every grid combination once)" in capsys.readouterr().out
    small = sweep_file(base__model={"tiny": {"num_layers": 4}})
    assert cli.main(["validate", str(small), "--preset", "rmu-layer-ablation"]) == 0
    assert "12 trials of rmu" in capsys.readouterr().out  # layers 5 and 7 dropped
    tiny = sweep_file(base__model={"tiny": {"num_layers": 2}})
    assert cli.main(["validate", str(tiny), "--preset", "method-compare"]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert "method.layer" in err and "3" in err and "deeper than the 2-layer model" in err and "0..1" in err
