"""Real sweeps: a local Ray cluster, Ray Tune + Optuna (SQLite study), MLflow (SQLite store), DeepSpeed trials.

The prepared model comes from the session's shared cache (`prepare_cache`), as a second sweep on a machine would.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import statistics
import time
from importlib import metadata
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from scipy.stats import ks_2samp

from orchestrator import cli
from orchestrator.config_files import load_config
from orchestrator.pareto import pareto_front
from orchestrator.prepare import prepare, prepared_dir
from orchestrator.references import ORACLE_LABEL, TARGET_LABEL
from orchestrator.run_record import PACKAGES, SOURCE_DIR, git_commit
from orchestrator.sweep_config import load_sweep_config
from orchestrator.trial_record import read_record
from orchestrator.warm_start import ATTR_ORIGIN
from tests.orchestrator.conftest import ATTACK, told_sweep
from trainables.config import TrialConfig
from trainables.data.loading import benchmark_fingerprint, load_benchmark
from trainables.metrics.definitions import DEFINITIONS_VERSION
from trainables.report_keys import ATTACK_FILE, TRIAL_RECORD_FILE

pytestmark = pytest.mark.slow

OBJECTIVES = ["forget_quality", "model_utility"]
NUM_LAYERS = 4  # the small trial config's depth (model.tiny.num_layers)


# Credentials a user has in the environment on a cluster; none may reach MLflow, the sweep files or the console.
PLANTED = {"MLFLOW_TRACKING_TOKEN": "planted-mlflow-token-5f1c", "AWS_SECRET_ACCESS_KEY": "planted-s3-key-9a7e",
           "HF_TOKEN": "hf_plantedtoken3b2d"}


def test_four_trial_sweep_logs_trials_study_and_pareto_front(sweep_env, monkeypatch, capfd):
    monkeypatch.chdir(sweep_env.root)
    for k, v in PLANTED.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["sweep", str(sweep_env.write("four", 4, 2))]) == 0
    console = "".join(capfd.readouterr())
    assert "Pareto front" in console  # the console was captured
    assert "sweep four: trials run on warm slots" in console  # the default: same resources for every trial
    # One line per trial start and end, with the searched parameters and the objectives.
    assert len(re.findall(r"trial [1-4]/4 started: tau=\S+ lambda=\S+ layer=last-\d lr=\S+", console)) == 4
    assert len(re.findall(r"trial [1-4]/4 done in \d+ s: forget_quality=\S+ model_utility=\S+", console)) == 4
    # Tune's table: objectives and searched parameters as columns, not the training losses or Tune's resources.
    assert re.search(r"\|\s*tau\s*\|\s*lambda\s*\|\s*layer\s*\|\s*lr\s*\|\s*forget_quality\s*\|", console)
    assert "train/loss" not in console and "Logical resource usage" not in console
    # Ray Train's per-epoch reports stay out of the console.
    assert "TrainingReport(" not in console
    for secret in PLANTED.values():
        assert secret not in console
        leaks = [p for p in sweep_env.root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaks == [], f"{secret} written to {leaks}"

    parents, children = sweep_env.runs("four")
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    client = MlflowClient(sweep_env.tracking_uri)
    for c in children:
        assert c.info.status == "FINISHED"
        assert {"clreg.tau", "clreg.lambda", "clreg.layer", "train.lr"} <= set(c.data.params)
        assert all(m in c.data.metrics for m in OBJECTIVES + ["train/loss", "train/clreg_loss"])
        assert c.data.tags["method"] == "simnpo" and c.data.tags["clreg"] == "on"
        # One seed through the one channel: that seed's metrics, no spread and no per-seed copies.
        assert not any(k.endswith("_std") or re.match(r"seed\d+/", k) for k in c.data.metrics)
        assert "num_seeds" not in c.data.metrics
        # The trial's record beside its outputs (under seed-0/), the same file on its run.
        trial_dir = sweep_env.sweep_dir("four") / "trials" / c.data.tags["clreg.trial_id"]
        record = read_record(trial_dir)
        assert record.seeds == [0] and record.clreg_active and record.config["clreg"]["layer"] == (
            c.data.params["clreg.layer"])
        assert record.target_layer == NUM_LAYERS - int(c.data.params["clreg.layer"].removeprefix("last-"))
        logged = client.download_artifacts(c.info.run_id, TRIAL_RECORD_FILE, str(sweep_env.root / "downloads"))
        assert Path(logged).read_text() == (trial_dir / TRIAL_RECORD_FILE).read_text()
        assert (trial_dir / "seed-0" / "eval_aggregates.json").is_file()

    study = sweep_env.study("four")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4

    points = [[c.data.metrics[m] for m in OBJECTIVES] for c in children]
    on_front = set(pareto_front(points))
    assert {i for i, c in enumerate(children) if c.data.tags.get("pareto") == "true"} == on_front
    assert "pareto/hypervolume" in parents[0].data.metrics

    # Reference points on the parent, from the prepared target's and oracle's saved evaluations.
    parent = parents[0].data
    base = load_config(TrialConfig, None, [*sweep_env.overrides, "train.epochs=1"])  # the sweep's base
    prepared = prepared_dir(prepare(base, log=lambda _: None))  # a cache hit: the sweep's prepared models
    target = json.loads((prepared / "target" / "eval_aggregates.json").read_text())
    target_tr = json.loads((prepared / "target" / "eval_per_item.json").read_text())["forget_truth_ratio"]
    oracle_tr = json.loads((prepared / "oracle" / "eval_per_item.json").read_text())["forget_truth_ratio"]
    assert parent.metrics["reference/target/forget_quality"] == pytest.approx(ks_2samp(target_tr, oracle_tr).pvalue)
    assert parent.metrics["reference/target/model_utility"] == pytest.approx(target["model_utility"])
    assert parent.metrics["reference/oracle/forget_quality"] == 1.0  # the KS test of a sample against itself
    assert parent.metrics["reference/oracle/privleak"] == 0.0
    assert (parent.tags["clreg.reference.target"], parent.tags["clreg.reference.oracle"]) == (TARGET_LABEL,
                                                                                               ORACLE_LABEL)
    assert (prepared / "reference.json").is_file()
    # The console says how many trials left an objective exactly at the target's value (nothing it registered).
    unmoved = sum(c.data.metrics["forget_quality"] == pytest.approx(parent.metrics["reference/target/forget_quality"],
                                                                    rel=1e-9) for c in children)
    assert (f"note: {unmoved} of 4 trials ended with forget_quality exactly at the target's" in console) == (
        unmoved > 0)

    # The run record on every child (and the parent): what produced the numbers beyond the config.
    fingerprint = benchmark_fingerprint(load_benchmark(base.data, base.prepare.cache_dir))
    expected = {f"record.versions.{name}": metadata.version(name) for name in PACKAGES} | {
        "record.world_size": str(base.train.num_workers),
        "record.effective_batch_size": str(base.train.micro_batch_size * base.train.grad_accum
                                           * base.train.num_workers),
        "record.benchmark_fingerprint": fingerprint,
        "record.eval_definitions": base.eval.definitions,
        "record.eval_definitions_version": DEFINITIONS_VERSION[base.eval.definitions],
        "record.clreg_sweep_version": metadata.version("clreg-sweep"),
    }
    for run in (*children, parents[0]):
        assert {k: run.data.params.get(k) for k in expected} == expected
        if git_commit(SOURCE_DIR) is not None:  # run from a checkout: its HEAD, "-dirty" with changes
            assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", run.data.params["record.git_commit"])

    report = cli.main(["report", str(sweep_env.sweep_dir("four"))])
    assert report == 0
    text = (sweep_env.sweep_dir("four") / "report" / "report.md").read_text()
    assert "Pareto front" in text and text.count("| * |") == len(on_front)
    fq, mu = (parent.metrics[f"reference/target/{m}"] for m in OBJECTIVES)
    assert "## Reference points" in text and f"| {TARGET_LABEL} | {fq:.4g} | {mu:.4g} |" in text
    assert f"| {ORACLE_LABEL} | 1 |" in text


def test_repeated_seeds_score_a_point_by_its_mean(sweep_env, monkeypatch):
    """clreg-default with 2 seeds per point: each seed trains; Optuna and MLflow get the means, MLflow the spread
    and each seed's per-epoch progress under `seed<s>/`."""
    monkeypatch.chdir(sweep_env.root)
    assert cli.main(["sweep", str(sweep_env.write("repeats", 1, 1, seeds=[0, 1], epochs=2))]) == 0

    (child,) = sweep_env.runs("repeats")[1]
    m = child.data.metrics
    assert child.data.tags["seeds"] == "0,1" and m["num_seeds"] == 2
    for metric in OBJECTIVES + ["train/loss"]:
        per_seed = [m[f"seed{s}/{metric}"] for s in (0, 1)]
        assert m[metric] == pytest.approx(statistics.fmean(per_seed))
        assert m[f"{metric}_std"] == pytest.approx(statistics.stdev(per_seed))
    # Different seeds give different training trajectories (else the spread would mean nothing).
    assert m["seed0/train/loss"] != m["seed1/train/loss"]
    client = MlflowClient(sweep_env.tracking_uri)
    for s in (0, 1):  # every epoch's report of each seed, at its epoch
        assert sorted({h.step for h in client.get_metric_history(child.info.run_id, f"seed{s}/train/loss")}) == [1, 2]
    (trial,) = sweep_env.study("repeats").trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values == pytest.approx([m[o] for o in OBJECTIVES])
    trial_dir = next((sweep_env.sweep_dir("repeats") / "trials").iterdir())
    assert sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("seed-")) == ["seed-0", "seed-1"]
    assert read_record(trial_dir).seeds == [0, 1]
    assert cli.main(["report", str(sweep_env.sweep_dir("repeats"))]) == 0
    report = (sweep_env.sweep_dir("repeats") / "report" / "report.md").read_text()
    assert f"| {m['forget_quality']:.4g} ± {m['forget_quality_std']:.2g} |" in report


def test_interrupted_sweep_resumes_to_exactly_the_requested_trials(sweep_env, prepare_cache, capfd):
    """SIGINT after the first finished trial: Tune lets the running trial end, saves its state and stops before
    the third; `resume` runs the rest: 3 of everything, once. The sweep attacks its Pareto front when it ends
    (`attack.when: front`): not when interrupted, exactly the front after the resume, never twice. It is
    warm-started from an earlier sweep's study, whose two finished trials it adds once, not again on resume."""
    earlier = load_sweep_config(sweep_env.write("earlier", 2, 1), [])
    source = told_sweep(earlier, [{"forget_quality": 0.05, "model_utility": 0.3}, None,
                                  {"forget_quality": 0.2, "model_utility": 0.1}], NUM_LAYERS)
    sweep_file = sweep_env.write("resumed", 3, 1, base=[*ATTACK, "attack.when=front"],
                                 search={"warm_start": [str(source)]})
    proc = sweep_env.spawn_sweep(sweep_file)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                finished = [c for c in sweep_env.runs("resumed")[1] if c.info.status == "FINISHED"]
            except Exception:  # the experiment does not exist yet
                finished = []
            if len(finished) >= 1:
                break
            time.sleep(2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == cli.EXIT_INTERRUPTED
    parents, children = sweep_env.runs("resumed")
    assert parents[0].info.status == "KILLED"  # an interrupted sweep never looks complete
    assert 1 <= len([c for c in children if c.info.status == "FINISHED"]) < 3
    trials = sweep_env.sweep_dir("resumed") / "trials"
    assert not list(trials.glob(f"*/{ATTACK_FILE}"))  # the front is attacked when the sweep ends, not before

    # Resumed from another place: a moved sweep folder continues where it is now (its study, Tune experiment and
    # trial outputs there), and nothing is recreated at the old address; then moved back for the checks below.
    moved = sweep_env.root / "elsewhere" / "resumed"
    moved.parent.mkdir()
    shutil.move(sweep_env.sweep_dir("resumed"), moved)
    capfd.readouterr()
    assert cli.main(["resume", str(moved)]) == 0
    console = "".join(capfd.readouterr())
    assert not sweep_env.sweep_dir("resumed").exists()
    shutil.move(moved, sweep_env.sweep_dir("resumed"))

    parents, children = sweep_env.runs("resumed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["clreg.trial_id"] for c in children}) == 3
    study = sweep_env.study("resumed").trials
    assert [t.state for t in study if ATTR_ORIGIN not in t.user_attrs] == [optuna.trial.TrialState.COMPLETE] * 3
    assert [t.user_attrs.get(ATTR_ORIGIN) for t in study[:2]] == [f"{source}#0", f"{source}#2"]  # not the crash
    assert [t.values for t in study[:2]] == [[0.05, 0.3], [0.2, 0.1]] and len(study) == 5
    assert sweep_env.tune_trials("resumed") == [("TERMINATED", 0)] * 3

    # The front attack: the reference built once per prepared pair and attack (here, or by the session's attacked
    # sweep), exactly the front's trials attacked, their figures logged to their runs.
    assert "attack: relearning the oracle and the target once" in console or "attack: reference cache hit" in console
    assert len(list(prepare_cache.rglob("attack-references/*/attack_reference.json"))) == 1
    front = {c.data.tags["clreg.trial_id"] for c in children if c.data.tags.get("pareto") == "true"}
    attacked = {d.name for d in trials.iterdir() if (d / ATTACK_FILE).is_file()}
    assert front and attacked == front
    for c in children:
        on_front = c.data.tags["clreg.trial_id"] in front
        assert ("relearn/forget_prob" in c.data.metrics) == on_front and ("relearn/R" in c.data.metrics) == on_front
    stamps = {t: (trials / t / ATTACK_FILE).stat().st_mtime_ns for t in attacked}

    # Resuming the finished sweep runs no trial and attacks nothing again.
    assert cli.main(["resume", str(sweep_env.sweep_dir("resumed"))]) == 0
    assert f"attack: every front trial ({len(front)}) is attacked already" in "".join(capfd.readouterr())
    assert {t: (trials / t / ATTACK_FILE).stat().st_mtime_ns for t in attacked} == stamps
    some = next(c for c in children if c.data.tags["clreg.trial_id"] in front)
    assert len(MlflowClient(sweep_env.tracking_uri).get_metric_history(some.info.run_id, "relearn/forget_prob")) == 1


def test_early_stopping_and_epoch_candidates(sweep_env, monkeypatch, capfd):
    """Two trials one after the other: the target model again (lr 1e-12) and a few SimNPO steps at lr 3e-3, which
    cost it model utility and retain probability at epoch 1. The second is beaten at its first rung and stopped:
    KILLED in MLflow, PRUNED in Optuna, off the front; the first, on every rung's front, runs to its end.

    With `search.candidates: epochs` each evaluated epoch is a point: the front over the untouched trial's two epochs
    is tagged on its run, their models are kept and `export --front` copies them out; the stopped trial's epoch-1
    model is deleted (`keep_models: front`); Optuna is told the epoch best_hv picks."""
    monkeypatch.chdir(sweep_env.root)
    space = {"fixed": {"method.name": "simnpo", "clreg.enabled": True},
             "parameters": {"train.lr": {"type": "grid", "values": [1e-12, 3e-3]}}}
    path = sweep_env.write("stopped", 2, 1, epochs=2, space=space, base=["eval.every=1"],
                           objectives=["model_utility", "retain_prob"],
                           search={"early_stopping": {"enabled": True, "grace_epochs": 1}, "candidates": "epochs",
                                   "trial_value": "best_hv"})
    assert cli.main(["sweep", str(path)]) == 0
    console = " ".join("".join(capfd.readouterr()).split())
    _, children = sweep_env.runs("stopped")
    by_lr = {float(c.data.params["train.lr"]): c for c in children}
    kept, stopped = by_lr[1e-12], by_lr[3e-3]
    client = MlflowClient(sweep_env.tracking_uri)
    at = {name: {m.step: m.value for m in client.get_metric_history(stopped.info.run_id, name)}
          for name in ("model_utility", "retain_prob")}
    kept_at = {name: {m.step: m.value for m in client.get_metric_history(kept.info.run_id, name)}
               for name in ("model_utility", "retain_prob")}
    assert all(at[n][1] < kept_at[n][1] for n in at), (at, kept_at)  # beaten on both at epoch 1
    assert (kept.info.status, stopped.info.status) == ("FINISHED", "KILLED")
    assert sorted(kept_at["model_utility"]) == [1, 2] and sorted(at["model_utility"]) == [1]
    assert "trial 2/2 stopped early by the scheduler" in console
    assert (kept.data.tags["pareto"]) == "true" and "pareto" not in stopped.data.tags
    states = [t.state for t in sweep_env.study("stopped").trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]

    # Epoch candidates: the kept trial's two epochs are the points (lr 1e-12 moves the weights by ~1e-12, so the two
    # epochs differ in the last digits); the front over them is tagged, its models kept, the stopped trial's gone.
    trials = sweep_env.sweep_dir("stopped") / "trials"
    kept_dir, stopped_dir = (trials / c.data.tags["clreg.trial_id"] / "seed-0" for c in (kept, stopped))
    points = {e: [kept_at["model_utility"][e], kept_at["retain_prob"][e]] for e in (1, 2)}
    front = [e for i, e in enumerate(points) if i in pareto_front(list(points.values()))]
    assert kept.data.tags["pareto_epochs"] == ",".join(map(str, front))
    assert (kept_dir / "epoch-1").is_dir() == (1 in front) and (kept_dir / "final_model").is_dir()
    assert not (stopped_dir / "epoch-1").exists()  # (its final_model may exist: the stop reached it late)
    parent = sweep_env.runs("stopped")[0][0].data.metrics
    assert (parent["pareto/num_candidates"], parent["pareto/num_trials"]) == (2, 1)
    # best_hv, alone in the study: the epoch whose point bounds the larger area with (0, 0); a tie, the later one.
    told = max(points, key=lambda e: (points[e][0] * points[e][1], e))
    kept_trial = sweep_env.study("stopped").trials[0]
    assert (kept_trial.user_attrs["clreg.epoch"], kept_trial.values) == (told, points[told])
    assert f"(1 complete, 2 feasible epoch candidates, {len(front)} on the Pareto front" in console
    assert ("epoch candidates: every 1 epoch(s) a trial's model is a point for the front; Optuna is told the epoch "
            "adding most hypervolume (best_hv); epoch models kept: the front") in console

    out = sweep_env.root / "exported"
    assert cli.main(["export", str(sweep_env.sweep_dir("stopped")), "--front", "--out", str(out)]) == 0
    manifest = json.loads((out / "front.json").read_text())
    kept_id = kept.data.tags["clreg.trial_id"]
    assert sorted(m["folder"] for m in manifest) == [f"{kept_id}-seed0-epoch{e}" for e in front]
    from trainables.model.loading import load_causal_lm

    load_cfg = load_config(TrialConfig, None, sweep_env.overrides).model
    for m in manifest:
        model = load_causal_lm(str(out / m["folder"]), load_cfg, trainable=False)  # a plain HF folder
        assert model.config.num_hidden_layers == NUM_LAYERS and m["model_utility"] == points[m["epoch"]][0]
    assert cli.main(["export", str(sweep_env.sweep_dir("stopped")), "--front", "--out", str(out)]) == cli.EXIT_INVALID
    assert "exists and is not an empty folder" in " ".join("".join(capfd.readouterr()).split())

    assert cli.main(["report", str(sweep_env.sweep_dir("stopped"))]) == 0
    report = (sweep_env.sweep_dir("stopped") / "report" / "report.md").read_text()
    assert "2 epoch candidates" in report and all(f"| {kept_id} | {e} |" in report for e in front)
