"""Real trials on a real local Ray cluster with real DeepSpeed engines (CPU, gloo).

One small prepared benchmark is shared by the module: `prepare` is checked for the TOFU protocol (the target
knows the forget set, the oracle does not) and for its cache, then the same unlearning trial is run under
several data-parallel layouts and ZeRO stages, which must follow the same loss trajectory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cluster import ray_cluster
from orchestrator.config_files import load_config
from orchestrator.prepare import prepare
from trainables.config import LoraConfig, TrialConfig
from trainables.engine.checkpoints import STATE_FILE
from trainables.engine.trainer import build_trainer, fit_to_end
from trainables.engine.worker import WorkerJob
from trainables.report_keys import OUTCOME_FILE

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory, small_overrides, prepare_cache) -> TrialConfig:
    root = tmp_path_factory.mktemp("trial")
    return load_config(TrialConfig, None, small_overrides + [f"prepare.cache_dir={prepare_cache}",
                                                   f"output_dir={root / 'runs'}"])


@pytest.fixture(scope="module")
def prepared(cluster, base_cfg):
    return prepare(base_cfg, log=lambda *_: None)


def test_prepare_makes_a_target_that_knows_the_forget_set(prepared):
    target, oracle = prepared.report["target"], prepared.report["oracle"]
    # The target was trained on the forget set, the oracle never saw it: the gap must be large, not noise.
    assert target["forget_prob"] > oracle["forget_prob"] + 0.2, (target, oracle)
    assert target["forget_rouge"] > oracle["forget_rouge"], (target, oracle)
    assert target["forget_prob"] > prepared.report["base"]["forget_prob"] + 0.2  # fine-tuning taught it
    # The oracle learned what it was trained on (retain), just not the forget set.
    assert oracle["retain_prob"] > oracle["forget_prob"] + 0.1, oracle
    ref = json.loads(open(prepared.oracle_reference).read())
    assert len(ref["forget_truth_ratios"]) == 12


def test_prepare_reuses_its_cache(prepared, base_cfg):
    messages: list[str] = []
    again = prepare(base_cfg, log=messages.append)
    assert again == prepared
    assert any("cache hit" in m for m in messages), messages


def _trajectory(cfg: TrialConfig, prepared, name: str, workers: int, accum: int, zero: int) -> list[float]:
    trial = cfg.model_copy(update={"train": cfg.train.model_copy(update={
        "num_workers": workers, "grad_accum": accum, "zero_stage": zero, "epochs": 2, "micro_batch_size": 2,
        "lr": 5e-4})})
    out = f"{cfg.output_dir}/{name}"
    job = WorkerJob(trial=trial, task="unlearn",
                    model_dir=prepared.target_dir, output_dir=out, evaluate=False)
    result = build_trainer(job, storage_path=f"{out}/ray", name=name).fit()
    assert result.error is None
    with result.checkpoint.as_directory() as d:
        history = json.loads(open(f"{d}/{STATE_FILE}").read())["history"]
    return [h["train/loss"] for h in history] + [h["train/clreg_loss"] for h in history]


def test_two_workers_zero2_and_zero3_follow_the_one_worker_trajectory(prepared, base_cfg):
    one = _trajectory(base_cfg, prepared, "w1-z0", workers=1, accum=2, zero=0)
    z2 = _trajectory(base_cfg, prepared, "w2-z2", workers=2, accum=1, zero=2)
    z3 = _trajectory(base_cfg, prepared, "w2-z3", workers=2, accum=1, zero=3)
    # Same global batch (2 x 2), same micro-batches, same dropout draws: only float reduction order differs.
    assert z2 == pytest.approx(one, rel=1e-3), (one, z2)
    assert z3 == pytest.approx(one, rel=1e-3), (one, z3)
    assert one[1] != one[0]  # it trained: the loss moved between epochs


def test_gradascent_that_destroys_the_model_drives_utility_down(prepared, base_cfg):
    trial = base_cfg.model_copy(update={
        "method": base_cfg.method.model_copy(update={"name": "gradascent"}),
        "clreg": base_cfg.clreg.model_copy(update={"enabled": False}),
        "train": base_cfg.train.model_copy(update={"epochs": 3, "lr": 2e-2, "micro_batch_size": 4}),
    })
    out = f"{base_cfg.output_dir}/gradascent"
    job = WorkerJob(trial=trial, task="unlearn",
                    model_dir=prepared.target_dir, output_dir=out, oracle_reference=prepared.oracle_reference)
    assert build_trainer(job, storage_path=f"{out}/ray", name="ga").fit().error is None
    after = json.loads(open(f"{out}/eval_aggregates.json").read())
    before = prepared.report["target"]
    assert before["retain_prob"] > 0.2, before  # the premise: the target knew its retain set
    assert after["retain_prob"] < 0.5 * before["retain_prob"], (before, after)
    assert after["model_utility"] <= before["model_utility"], (before, after)
    assert after["forget_quality"] is not None  # the oracle reference was used


def test_eval_command_scores_the_oracle_against_itself(prepared, base_cfg, tmp_path, small_overrides):
    """`clreg-sweep eval` on the prepared oracle, with the oracle's own reference: forget quality is exactly 1.

    Written as open-unlearning's log too, that log then replaces the trained oracle's reference in `prepare`
    (`prepare.enabled: true` + `prepare.oracle_logs`: the cached models are reused, the reference is the log's).
    """
    from orchestrator import cli
    from trainables.metrics.registry import OracleReference

    oracle_dir = str(prepared.target_dir).replace("/target/", "/oracle/")
    sets = [f"--set={s}" for s in small_overrides] + [f"--set=prepare.cache_dir={base_cfg.prepare.cache_dir}"]
    code = cli.main(["eval", oracle_dir, *sets, "--oracle-reference", prepared.oracle_reference,
                     "--out", str(tmp_path), "--format", "open-unlearning"])
    assert code == 0
    aggregates = json.loads((tmp_path / "eval_aggregates.json").read_text())
    assert aggregates["forget_quality"] == pytest.approx(1.0)
    assert (tmp_path / "eval_per_item.json").is_file()

    with_log = base_cfg.model_copy(update={"prepare": base_cfg.prepare.model_copy(update={
        "oracle_logs": str(tmp_path / "TOFU_EVAL.json")})})
    messages: list[str] = []
    from_log = prepare(with_log, log=messages.append)
    assert any("cache hit" in m for m in messages), messages  # the log does not change what is trained
    assert from_log.target_dir == prepared.target_dir and from_log.oracle_reference != prepared.oracle_reference
    trained = OracleReference.from_json(Path(prepared.oracle_reference).read_text())
    logged = OracleReference.from_json(Path(from_log.oracle_reference).read_text())
    assert len(logged.forget_truth_ratios) == 12  # the same model scored again: the same reference
    assert logged.forget_truth_ratios == pytest.approx(trained.forget_truth_ratios, rel=1e-5)
    assert logged.mia_min_k_auc == pytest.approx(trained.mia_min_k_auc)


def test_lora_trial_with_evaluation_every_epoch(prepared, base_cfg):
    """A full Ray trial with LoRA adapters; `eval.every=1` adds the metrics to the first epoch's report."""
    trial = base_cfg.model_copy(update={
        "model": base_cfg.model.model_copy(update={"lora": LoraConfig(rank=4)}),
        "eval": base_cfg.eval.model_copy(update={"every": 1}),
        "train": base_cfg.train.model_copy(update={"epochs": 2, "lr": 1e-3}),
    })
    trial = TrialConfig.model_validate(trial.model_dump(mode="json", by_alias=True))
    out = f"{base_cfg.output_dir}/lora"
    job = WorkerJob(trial=trial, task="unlearn",
                    model_dir=prepared.target_dir, output_dir=out, oracle_reference=prepared.oracle_reference)
    result = build_trainer(job, storage_path=f"{out}/ray", name="lora").fit()
    assert result.error is None
    with result.checkpoint.as_directory() as d:
        history = json.loads(open(f"{d}/{STATE_FILE}").read())["history"]
    assert "forget_prob" in history[0]  # evaluated after epoch 1, not only at the end
    assert (Path(out) / "final_model" / "adapter_config.json").is_file()
    assert json.loads((Path(out) / "eval_aggregates.json").read_text())["forget_prob"] is not None
    # Rank 0's set-up phases and clocks, from which `fit_to_end` splits the run's fixed cost.
    outcome = json.loads((Path(out) / "run_outcome.json").read_text())
    assert outcome["worker_started_at"] < outcome["reported_at"]
    phases = ["import", "data", "model", "engine", "reference", "restore"]
    assert all(0 <= outcome[f"setup/{p}_seconds"] < 600 for p in phases)


def test_a_rerun_of_the_same_trial_resumes_from_its_newest_checkpoint(prepared, base_cfg):
    """Ray Train restores a run by its name: the second `fit` loads the DeepSpeed checkpoint of epoch 1 and the
    epoch counter continues (the first epoch is not trained again)."""
    def fit(epochs: int):
        trial = base_cfg.model_copy(update={"train": base_cfg.train.model_copy(update={"epochs": epochs})})
        out = f"{base_cfg.output_dir}/resume"
        job = WorkerJob(trial=trial, task="unlearn",
                        model_dir=prepared.target_dir, output_dir=out, evaluate=False)
        result = build_trainer(job, storage_path=f"{out}/ray", name="resume").fit()
        assert result.error is None
        with result.checkpoint.as_directory() as d:
            return json.loads(open(f"{d}/{STATE_FILE}").read())["history"]

    first = fit(epochs=1)
    second = fit(epochs=2)
    assert [h["epoch"] for h in second] == [1, 2]
    assert second[0] == first[0]  # epoch 1 comes from the checkpoint, byte for byte, not from a new run


def test_one_run_trains_every_seed_and_a_rerun_only_what_is_left(prepared, base_cfg):
    """`WorkerJob.seeds`: one Ray Train run trains the trial once per seed into `seed-<s>/`. A rerun of the run
    skips a seed whose outcome says it finished, and resumes from the run's newest checkpoint only the seed that
    checkpoint holds; another seed starts from epoch 0 and retrains exactly as before."""
    out = Path(base_cfg.output_dir) / "seeds"
    trial = base_cfg.model_copy(update={"train": base_cfg.train.model_copy(update={"epochs": 2})})

    def fit(seeds: list[int]) -> dict:
        job = WorkerJob(trial=trial, task="unlearn",
                        model_dir=prepared.target_dir, output_dir=str(out), evaluate=False, seeds=seeds)
        return fit_to_end(build_trainer(job, storage_path=f"{out}/ray", name="seeds"), out)

    def outcome(seed: int) -> dict:
        return json.loads((out / f"seed-{seed}" / OUTCOME_FILE).read_text())

    run = fit([0, 1])
    assert run["seeds_trained"] == 2 and run["startup_seconds"] > 0
    first = {s: outcome(s) for s in (0, 1)}
    assert all(first[s]["trial_complete"] == 1 and first[s]["resumed_from_epoch"] == 0 for s in (0, 1))
    assert first[0]["train/loss"] != first[1]["train/loss"]  # each seed its own data order and dropout views
    assert (out / "seed-0" / "final_model").is_dir() and (out / "seed-1" / "final_model").is_dir()

    seed0_file = (out / "seed-0" / OUTCOME_FILE).read_bytes()
    (out / "seed-1" / OUTCOME_FILE).unlink()  # seed 1 "did not finish"; the newest checkpoint is its last epoch
    fit([0, 1])
    assert (out / "seed-0" / OUTCOME_FILE).read_bytes() == seed0_file  # finished: not trained again
    assert outcome(1)["resumed_from_epoch"] == 2 and outcome(1)["train/loss"] == first[1]["train/loss"]

    (out / "seed-0" / OUTCOME_FILE).unlink()  # the checkpoint holds seed 1: seed 0 must start over, not load it
    fit([0])
    assert outcome(0)["resumed_from_epoch"] == 0
    assert outcome(0)["train/loss"] == pytest.approx(first[0]["train/loss"], rel=1e-6)


def test_two_zero3_workers_share_npo_reference_and_agree_on_which_seeds_are_left(prepared, base_cfg):
    """Two workers under ZeRO-3 (one run for both properties: each Ray Train run costs seconds of start-up):

    - NPO needs the frozen reference model; under ZeRO-3 it is partitioned like the trained one.
    - Rank 0 decides which seeds are unfinished and tells rank 1 (a rank deciding on its own from a stale view of
      the shared directory would hang the run's collectives): a finished seed is skipped by both.
    """
    out = Path(base_cfg.output_dir) / "npo-z3-seeds"
    trial = base_cfg.model_copy(update={
        "method": base_cfg.method.model_copy(update={"name": "npo"}),
        "train": base_cfg.train.model_copy(update={"epochs": 1, "num_workers": 2, "zero_stage": 3,
                                                   "micro_batch_size": 2}),
    })
    (out / "seed-3").mkdir(parents=True)
    (out / "seed-3" / OUTCOME_FILE).write_text(json.dumps({"trial_complete": 1, "train/loss": -1.0}))
    job = WorkerJob(trial=trial, task="unlearn",
                    model_dir=prepared.target_dir, output_dir=str(out), evaluate=False, seeds=[3, 4])
    run = fit_to_end(build_trainer(job, storage_path=f"{out}/ray", name="npo-z3-seeds"), out)
    assert run["trial_complete"] == 1
    assert json.loads((out / "seed-3" / OUTCOME_FILE).read_text())["train/loss"] == -1.0  # skipped, untouched
    trained = json.loads((out / "seed-4" / OUTCOME_FILE).read_text())
    assert trained["epoch"] == 1
    # At the first steps theta == ref, so NPO's forget loss starts at (2/beta) log 2 and moves from there.
    assert 0 < trained["train/forget_loss"] < 2 / 0.1 * 0.6932
