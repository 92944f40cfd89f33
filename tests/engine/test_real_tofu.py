"""Real TOFU end to end on a laptop: prepare the tiny model on a forget01/retain99 subset, then unlearn it.

The real files (../shared/data/tofu, no holdout files there, hence `holdout_split: null`) are cut to a few rows by
`data.forget_limit` / `data.retain_limit`; the tiny model is built from scratch, so prepare also teaches target and
oracle the real-authors and world-facts rows. Four Ray Train runs: prepare's target and oracle, SimNPO with and
without CLReg.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.cluster import ray_cluster
from orchestrator.config_files import load_config
from orchestrator.prepare import prepare
from trainables.config import TrialConfig
from trainables.engine.trainer import build_trainer, fit_to_end
from trainables.engine.worker import WorkerJob
from trainables.evaluation import evaluate_saved_model, load_eval

pytestmark = pytest.mark.slow

TOFU = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tofu").resolve()
FORGET_ROWS = 30
# The tiny model on a real-TOFU subset: 30 of the 40 forget01 rows, 20 retain99 rows (those TOFU evaluates); max_length
# 176 truncates no row with this model's tokenizer, paraphrased and perturbed answers included (`clreg-sweep
# validate` counts them). 20 prepare epochs teach the forget set (forget_prob ~0.1 vs the oracle's ~0.001); SimNPO
# at lr 5e-3 moves the truth ratios enough in 4 epochs for forget quality's KS test over 30 items to change.
REAL_TOFU_OVERRIDES = [
    "data.benchmark=tofu", f"data.path={TOFU}", "data.forget_split=forget01", "data.retain_split=retain99",
    "data.holdout_split=null", f"data.forget_limit={FORGET_ROWS}", "data.retain_limit=20", "data.max_length=176",
    "model.tiny.num_layers=4", "prepare.epochs=20", "prepare.micro_batch_size=16",
    "eval.layer_profile=false", "eval.max_new_tokens=16",
    "train.epochs=4", "train.lr=5e-3", "train.micro_batch_size=4",
]


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory, prepare_cache) -> TrialConfig:
    if not (TOFU / "forget01.json").is_file():
        pytest.skip(f"real TOFU files not found at {TOFU} (see /work/shared/data/tofu/README.md)")
    root = tmp_path_factory.mktemp("real-tofu")
    return load_config(TrialConfig, None, REAL_TOFU_OVERRIDES + [f"prepare.cache_dir={prepare_cache}",
                                                                 f"output_dir={root / 'runs'}"])


@pytest.fixture(scope="module")
def prepared(base_cfg):
    messages: list[str] = []
    with ray_cluster(num_cpus=2):
        result = prepare(base_cfg, log=messages.append)
        unlearned = {on: _unlearn(base_cfg, result, clreg=on) for on in (False, True)}
    return result, unlearned, messages


def _unlearn(cfg: TrialConfig, prepared, clreg: bool) -> dict:
    trial = cfg.model_copy(update={"clreg": cfg.clreg.model_copy(update={"enabled": clreg})})
    out = Path(cfg.output_dir) / f"simnpo-clreg-{'on' if clreg else 'off'}"
    job = WorkerJob(trial=trial, task="unlearn",
                    model_dir=prepared.target_dir, output_dir=str(out), oracle_reference=prepared.oracle_reference)
    final = fit_to_end(build_trainer(job, storage_path=str(out / "ray"), name=out.name), out)
    return {**load_eval(out).aggregates, "clreg_loss": final.get("train/clreg_loss")}


def test_prepare_teaches_the_target_its_forget_set_and_both_the_real_facts(prepared):
    result, _, messages = prepared
    target, oracle = result.report["target"], result.report["oracle"]
    assert target["forget_prob"] > 1.5 * oracle["forget_prob"] and target["forget_prob"] > oracle["forget_prob"] + 0.05
    # 20 epochs teach the forget set but leave generation weak (model_utility may be near 0 and warned about);
    # only the forget-set warning would make this test meaningless
    assert not any("does not know its forget set" in w for w in result.report["warnings"]), result.report
    # 100 real-authors + 117 world-facts rows, the stand-in for pretraining, and they were learned
    assert result.report["extra_train"]["rows"] == 217
    assert any("stand-in for pretraining: target and oracle also trained on 217" in m for m in messages), messages
    assert oracle["ra_prob"] > 0.4 and oracle["wf_prob"] > 0.4, oracle  # chance: 0.25 (3 wrong answers each)
    assert len(load_eval(Path(result.target_dir).parent).per_item["forget_prob"]) == FORGET_ROWS


def test_unlearning_moves_forget_quality_with_and_without_clreg(prepared, base_cfg):
    result, unlearned, _ = prepared
    before = evaluate_saved_model(result.target_dir, base_cfg, oracle_path=result.oracle_reference,
                                  metrics=["forget_truth_ratio", "forget_quality", "forget_prob"])
    assert math.isfinite(before["forget_quality"])
    for clreg, after in unlearned.items():
        assert after["forget_quality"] != pytest.approx(before["forget_quality"]), (clreg, before, after)
        assert after["forget_prob"] < before["forget_prob"], (clreg, before, after)
        assert after["mia_min_k"] is None  # holdout_split: null, so no MIA
    assert unlearned[True]["clreg_loss"] > 0 and unlearned[False]["clreg_loss"] is None
