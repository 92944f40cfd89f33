"""The sweep's attack reference: the oracle's and target's figures under the trials' relearning attack.

Computed once per prepared model pair and attack protocol (`attack_reference_key`) by a Ray Train run of the
`attack` recipe, cached beside the prepared models, and handed to every trial (`WorkerJob.attack_reference`), whose
R and recovery compare with it (`trainables.attacks.protocol.score_against_reference`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from orchestrator.prepare import Prepared, prepared_dir
from trainables.atomic_files import write_json_atomic
from trainables.config import TrialConfig
from trainables.engine.trainer import build_trainer, fit_to_end
from trainables.engine.worker import WorkerJob

REFERENCE_FILE = "attack_reference.json"


def attack_reference_key(cfg: TrialConfig, models: list[str]) -> str:
    """Hash of what the reference figures depend on: the two model folders, the relearning attack, the measured
    metrics and how they are evaluated, and the engine settings the attack trains with."""
    material = {"models": models, "relearn": cfg.attack.relearn.model_dump(mode="json"),
                "metrics": sorted(cfg.attack.metrics),
                "eval": cfg.eval.model_dump(mode="json", include={"definitions", "max_new_tokens", "batch_size"}),
                "prepare_lr": cfg.prepare.lr,
                "train": cfg.train.model_dump(mode="json", include={"zero_stage", "num_workers"}),
                "version": 2}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def oracle_model_dir(cfg: TrialConfig, prepared: Prepared) -> Path | None:
    """The oracle model to attack: `prepare`'s, or a model saved in `prepare.oracle_path` (the folder itself or
    its `oracle/final_model`, the layout `prepare` writes); None when there is none (an oracle log holds no model)."""
    built = prepared_dir(prepared)
    roots = [built / "oracle" / "final_model"] if built else []
    if cfg.prepare.oracle_path:
        roots += [Path(cfg.prepare.oracle_path), Path(cfg.prepare.oracle_path) / "oracle" / "final_model"]
    return next((d for d in roots if (d / "config.json").is_file()), None)


def attack_reference(cfg: TrialConfig, prepared: Prepared, log=print) -> tuple[str | None, str | None]:
    """(path of the cached reference, None), built first if needed; (None, why) when there is nothing to attack.

    Ray must be initialised. The figures are built in a temporary folder and written last, so an interrupted build
    is simply built again.
    """
    if not cfg.attack.relearn.enabled:
        return None, "attack.relearn.enabled is false"
    oracle = oracle_model_dir(cfg, prepared)
    if oracle is None:
        return None, ("no oracle model to attack (prepare.enabled false and prepare.oracle_path holds no model, or "
                      "an oracle log only)")
    cache = (prepared_dir(prepared) or Path(cfg.prepare.cache_dir).resolve() / "user-models") / "attack-references"
    final = cache / attack_reference_key(cfg, [str(oracle), prepared.target_dir]) / REFERENCE_FILE
    if final.is_file():
        log(f"attack: reference cache hit {final}")
        return str(final), None
    build = final.parent / "build"
    shutil.rmtree(build, ignore_errors=True)
    log("attack: relearning the oracle and the target once, as every trial will be attacked ...")
    # Quantization is not compared with a reference (Q is the model's own stability), so only relearning runs.
    relearn_only = cfg.model_copy(update={"attack": cfg.attack.model_copy(
        update={"quantize": cfg.attack.quantize.model_copy(update={"enabled": False})})})
    models = {"oracle": str(oracle), "target": prepared.target_dir}
    write_json_atomic(final, attack_models(relearn_only, models, build, "attack-reference"))
    shutil.rmtree(build, ignore_errors=True)
    log(f"attack: reference -> {final}")
    return str(final), None


def attack_models(cfg: TrialConfig, models: dict[str, str], work: Path, name: str) -> dict[str, dict]:
    """{name: the attack figures of that saved model}, from one Ray Train run of the `attack` recipe in `work`."""
    job = WorkerJob(trial=cfg, task="attack", model_dir=next(iter(models.values())), output_dir=str(work),
                    evaluate=False, attack_models=models)
    outcome = fit_to_end(build_trainer(job, storage_path=str(work / "ray"), name=name), work)
    return {model: outcome[model] for model in models}


def trial_attack_reference(cfg: TrialConfig, prepared: Prepared, log=print) -> str | None:
    """The reference a trial of `cfg` is scored against: built when `attack.when` is final, None otherwise (a
    front attack builds it after the sweep); without one, the trials report why R and the recovery are missing."""
    if cfg.attack.when != "final":
        return None
    path, why = attack_reference(cfg, prepared, log)
    if why:
        log(f"attack: no oracle reference ({why}): relearn/R, relearn/recovery and relearn/robustness stay missing")
    return path
