"""The commands' own inputs (`run --name`, `eval --out`, `ui --port`, the sweep folder of `resume` and `report`) are
refused before anything runs, with exit 2 and a message naming the option or file; internal failures exit 1 with
one line and a log file; Ctrl-C exits 130 saying what was kept, leaving no temporary folder.

The sweep folders are built from real parts: a real Optuna SQLite study (created once per module and copied),
Tune's file names, `sweep_state.json` as the driver writes it; each case damages one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from orchestrator import cli
from orchestrator.search import sweep_study_name
from orchestrator.sweep import check_resumable, load_sweep_dir, sweep_paths
from tests.refusals.harness import Workspace, words

NAME = "bad"  # the workspace sweep's name


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real Optuna SQLite database holding the sweep's study (creating one takes about a second)."""
    db = tmp_path_factory.mktemp("optuna") / "optuna.db"
    optuna.create_study(study_name=sweep_study_name(NAME), storage=f"sqlite:///{db}",
                        directions=["maximize", "maximize"])
    return db.read_bytes()


@pytest.fixture(autouse=True)
def log_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tempfile.gettempdir()` of the command, outside the workspace: where an internal failure's log goes."""
    folder = tmp_path_factory.mktemp("logs")
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def sweep_folder(ws: Workspace, db: bytes, parent: Path | None = None, name: str = NAME) -> Path:
    """A resumable sweep folder `parent/name` (default: the workspace's storage.dir), its files as a sweep that
    was interrupted after its first trials leaves them."""
    cfg = ws.sweep()
    root = (parent or Path(cfg["storage"]["dir"])) / name
    (root / "tune").mkdir(parents=True)
    (root / "sweep.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (root / "optuna.db").write_bytes(db)
    (root / "tune" / "tuner.pkl").write_bytes(b"\x80\x05N.")
    (root / "tune" / "experiment_state-2025-01-01_00-00-00.json").write_text(
        json.dumps({"runner_data": {}, "trial_data": [], "stats": {}}))
    (root / "sweep_state.json").write_text(json.dumps(
        {"parent_run_id": "0" * 32, "experiment_id": "1", "tracking_uri": cfg["mlflow"]["tracking_uri"],
         "target_dir": str(ws.root / "target")}))
    return root


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Each damage: (what the folder gets, argv after the command name is filled with the folder, fragments).
Damage = Callable[[Path], None]


def _state(values: dict | str) -> Damage:
    text = values if isinstance(values, str) else json.dumps(values)
    return lambda root: (root / "sweep_state.json").write_text(text)


RESUME_CASES: dict[str, tuple[Damage, list[str]]] = {
    "no sweep.yaml": (lambda root: (root / "sweep.yaml").unlink(), ["is not a sweep directory (no sweep.yaml)"]),
    "truncated optuna.db": (lambda root: truncate(root / "optuna.db"),
                            ["optuna.db is damaged or not an Optuna database"]),
    "garbage optuna.db": (lambda root: (root / "optuna.db").write_bytes(b"not a database" * 100),
                          ["optuna.db is damaged or not an Optuna database"]),
    "garbage tune state": (lambda root: (root / "tune" / "experiment_state-2025-01-01_00-00-00.json").write_text(
        "{\"runner_data\": [1, 2"), ["experiment_state-2025-01-01_00-00-00.json: Tune's experiment state cannot "
                                     "be read"]),
    "no tune folder": (lambda root: [p.unlink() for p in (root / "tune").iterdir()] and (root / "tune").rmdir(),
                       ["holds no Tune experiment to resume", "stopped before its first trial"]),
    "state file not JSON": (_state("{oops"), ["sweep_state.json is not JSON (line 1"]),
}

REPORT_CASES: dict[str, tuple[Damage, list[str]]] = {
    "missing state file": (lambda root: (root / "sweep_state.json").unlink(),
                           ["sweep_state.json does not exist", "is not a sweep directory, or its sweep stopped"]),
    "state without tracking_uri": (_state({"parent_run_id": "a", "experiment_id": "1"}),
                                   ["sweep_state.json: key 'tracking_uri' must be a non-empty string, got missing"]),
    "state is a list": (_state("[1, 2]"), ["sweep_state.json holds a JSON list, not an object"]),
    "sqlite store missing": (lambda root: None, ["mlflow.db does not exist"]),
}


@pytest.mark.parametrize("damage, fragments", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_resume_refuses_a_damaged_sweep_folder(workspace: Workspace, study_db: bytes, capsys, damage, fragments,
                                               log_dir: Path) -> None:
    root = sweep_folder(workspace, study_db)
    damage(root)
    workspace.refused(["resume", str(root)], capsys, fragments)
    assert not any(log_dir.iterdir()), "a refused input wrote a failure log"


@pytest.mark.parametrize("damage, fragments", REPORT_CASES.values(), ids=REPORT_CASES.keys())
def test_report_refuses_a_damaged_sweep_folder_and_creates_no_store(workspace: Workspace, study_db: bytes, capsys,
                                                                    damage, fragments) -> None:
    root = sweep_folder(workspace, study_db)
    damage(root)
    workspace.refused(["report", str(root)], capsys, fragments)
    assert not (workspace.root / "mlflow.db").exists() and not (root / "report").exists()


def test_report_of_an_unreachable_server_is_quick_and_masks_the_password(workspace: Workspace, study_db: bytes,
                                                                         capsys) -> None:
    root = sweep_folder(workspace, study_db)
    uri = f"http://clreg:hunter2secret@127.0.0.1:{closed_port()}"
    _state({"parent_run_id": "a" * 32, "experiment_id": "1", "tracking_uri": uri})(root)
    started = time.monotonic()
    err = workspace.refused(["report", str(root)], capsys, ["MLflow tracking server http://clreg:***@127.0.0.1",
                                                           "does not answer"])
    assert time.monotonic() - started < 20
    assert "hunter2secret" not in err


# Arguments refused by the parser or by the command's first lines: (argv, fragments); {root} is the workspace.
ARGUMENT_CASES: dict[str, tuple[list[str], list[str]]] = {
    "run --name ..": (["run", "{trial}", "--name", "../x"], ["argument --name: one directory name under output_dir",
                                                           "no '/', no '..'"]),
    "run --name absolute": (["run", "{trial}", "--name", "/abs"], ["argument --name", "got '/abs'"]),
    "run --name 300 chars": (["run", "{trial}", "--name", "n" * 300],
                             ["argument --name: at most 100 characters", "got 300", "(300 characters)"]),
    "eval --out a file": (["eval", "{model}", "{trial}", "--out", "{file}"], ["eval --out", "out.txt is a file"]),
    "eval model dir missing": (["eval", "{root}/no-model", "{trial}"],
                               ["eval MODEL_DIR", "no-model is not a directory"]),
    "ui --port 0": (["ui", "--port", "0"], ["argument --port: a port number 1-65535, got '0'"]),
    "ui --port 70000": (["ui", "--port", "70000"], ["argument --port: a port number 1-65535, got '70000'"]),
    "ui --port text": (["ui", "--port", "http"], ["argument --port: a port number 1-65535, got 'http'"]),
    "ui folder without state": (["ui", "{root}/data"], ["sweep_state.json does not exist"]),
    "ui folder is a file": (["ui", "{file}"], ["out.txt is not a directory"]),
}


@pytest.mark.parametrize("argv, fragments", ARGUMENT_CASES.values(), ids=ARGUMENT_CASES.keys())
def test_bad_command_argument_is_refused(workspace: Workspace, capsys, argv, fragments) -> None:
    (workspace.root / "model").mkdir()
    (workspace.root / "out.txt").write_text("results\n")
    fill = {"{trial}": str(workspace.write_trial()), "{model}": str(workspace.root / "model"),
            "{file}": str(workspace.root / "out.txt"), "{root}": str(workspace.root)}
    for key, value in fill.items():
        argv = [a.replace(key, value) for a in argv]
    workspace.refused(argv, capsys, fragments)


def test_renamed_sweep_folder_is_refused_naming_both_names(workspace: Workspace, study_db: bytes, capsys) -> None:
    root = sweep_folder(workspace, study_db)
    renamed = root.rename(root.with_name("renamed"))
    workspace.refused(["resume", str(renamed)], capsys, ["the folder is named 'renamed' but its sweep.yaml is sweep "
                                                         "'bad'", "rename the folder back to 'bad'"])


def test_moved_sweep_folder_resumes_where_it_is_now(workspace: Workspace, study_db: bytes) -> None:
    """Paths, study and state are read from the new place, and the move is said in one line."""
    old = sweep_folder(workspace, study_db)
    new_parent = workspace.root / "elsewhere" / "deeper"
    new_parent.mkdir(parents=True)
    moved = old.rename(new_parent / NAME)
    lines: list[str] = []

    cfg = load_sweep_dir(moved, log=lines.append)

    paths = sweep_paths(cfg)
    assert paths.root == moved and Path(cfg.storage.dir) == new_parent
    assert paths.optuna_url(cfg) == f"sqlite:///{moved / 'optuna.db'}"
    assert lines == [f"{moved}: moved from {old}; continuing it where it is now"]
    check_resumable(cfg)  # every file found at the new place
    assert load_sweep_dir(moved, log=lines.append) == cfg and len(lines) == 2  # not rewritten: said again


def test_folder_in_place_is_not_reported_as_moved(workspace: Workspace, study_db: bytes) -> None:
    root = sweep_folder(workspace, study_db)
    lines: list[str] = []
    cfg = load_sweep_dir(root, log=lines.append)
    assert lines == [] and sweep_paths(cfg).root == root
    check_resumable(cfg)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _bad_argv(name: str, sub: argparse.ArgumentParser, root: Path) -> list[str]:
    """A missing file or folder for every positional argument (with the required flags, e.g. `export --front`);
    without one, an override of no field."""
    positionals = [a for a in sub._actions if not a.option_strings]
    flags = [a.option_strings[0] for a in sub._actions if a.option_strings and a.required and a.nargs == 0]
    if positionals:
        return [name, *flags, *(str(root / "missing" / a.dest) for a in positionals)]
    if "--set" in sub._option_string_actions:
        return [name, "--set", "no_such_field=1"]
    return [name, "--no-such-option"]


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_refuses_a_bad_argument_without_a_traceback(workspace: Workspace, capsys, name) -> None:
    argv = _bad_argv(name, _subcommands()[name], workspace.root)
    err = workspace.refused(argv, capsys, [])
    assert "missing" in err or "no_such_field" in err or "no-such-option" in err, err


def test_internal_failure_exits_1_with_one_line_and_a_log(monkeypatch, capsys, log_dir: Path) -> None:
    def broken(args):
        raise RuntimeError("the store went away\nsecond line of detail")

    monkeypatch.setattr(cli, "cmd_report", broken)
    assert cli.main(["report", "somewhere"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    logs = list((log_dir / "clreg-sweep").iterdir())
    assert len(logs) == 1 and err.strip().splitlines() == [
        f"error: RuntimeError: the store went away; full log: {logs[0]}"], err
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "second line of detail" in text
    assert "report somewhere" in text.splitlines()[0]

    with pytest.raises(RuntimeError, match="the store went away"):
        cli.main(["--debug", "report", "somewhere"])


def test_ctrl_c_elsewhere_exits_130_with_a_line(monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_validate", interrupted)
    assert cli.main(["validate"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted: validate stopped"


@contextlib.contextmanager
def _no_cluster(address=None):
    yield


def test_ctrl_c_in_prepare_exits_130_and_leaves_no_temporary_folder(workspace: Workspace, monkeypatch,
                                                                    capsys) -> None:
    """Interrupted after the tiny base model was written into the build folder: the folder goes, the line says
    what the cache keeps."""
    import orchestrator.cluster
    import orchestrator.prepare

    reached = []

    def interrupted_evaluation(model_dir, *args, **kwargs):
        assert Path(model_dir, "config.json").is_file() and ".tmp-" in str(model_dir)
        reached.append(model_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(orchestrator.cluster, "ray_cluster", _no_cluster)
    monkeypatch.setattr(orchestrator.prepare, "evaluate_saved_model", interrupted_evaluation)
    assert cli.main(["prepare", str(workspace.write_trial())]) == cli.EXIT_INTERRUPTED

    cache = workspace.root / ".clreg" / "cache" / "prepared"
    assert reached and list(cache.iterdir()) == []
    assert f"interrupted: prepare stopped; its unfinished build was removed, and the finished entries in {cache} " \
           "are kept and reused" in words(capsys.readouterr().err)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["nothing saved", "checkpoint saved"])
def test_ctrl_c_in_run_removes_an_empty_run_folder_and_keeps_checkpoints(workspace: Workspace, monkeypatch, capsys,
                                                                         checkpoint: bool) -> None:
    import orchestrator.cluster
    import orchestrator.prepare

    out = workspace.root / "runs" / "r1"

    def interrupted_prepare(cfg, log, bench):
        (out / "ray" / "trial" / ("checkpoint_000000" if checkpoint else "driver_artifacts")).mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(orchestrator.cluster, "ray_cluster", _no_cluster)
    monkeypatch.setattr(orchestrator.cluster, "warn_if_trial_does_not_fit", lambda train, log: None)
    monkeypatch.setattr(orchestrator.prepare, "prepare", interrupted_prepare)
    assert cli.main(["run", str(workspace.write_trial()), "--name", "r1"]) == cli.EXIT_INTERRUPTED
    err = words(capsys.readouterr().err)
    assert out.is_dir() == checkpoint
    assert (f"{out} is kept with ray/trial/checkpoint_000000" if checkpoint
            else f"its folder {out} was removed") in err


def test_ctrl_c_in_eval_removes_its_partial_outputs(workspace: Workspace, monkeypatch, capsys) -> None:
    import trainables.evaluation

    model, out = workspace.root / "model", workspace.root / "eval-out"
    model.mkdir()

    def interrupted_evaluation(model_dir, cfg, oracle_path=None, out_dir=None, **kwargs):
        Path(out_dir).mkdir()
        (Path(out_dir) / "eval_aggregates.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainables.evaluation, "evaluate_saved_model", interrupted_evaluation)
    assert cli.main(["eval", str(model), str(workspace.write_trial()), "--out", str(out)]) == cli.EXIT_INTERRUPTED
    assert not out.exists()
    assert f"its partial outputs in {out} were removed" in words(capsys.readouterr().err)
