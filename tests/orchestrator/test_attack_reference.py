"""Where the sweep's attack reference comes from and what its cache key covers (the Ray Train run that builds it
is exercised by the attack sweep test)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.attack_reference import attack_reference, attack_reference_key, oracle_model_dir
from orchestrator.prepare import Prepared
from trainables.config import TrialConfig

MODELS = ["/m/oracle", "/m/target"]


def _cfg(**attack) -> TrialConfig:
    return TrialConfig.model_validate({"attack": {"when": "final", **attack}})


def test_the_key_follows_the_attack_and_not_the_searched_learning_rate():
    base = attack_reference_key(_cfg(), MODELS)
    assert attack_reference_key(_cfg(), MODELS) == base
    assert attack_reference_key(_cfg(relearn={"steps": 3}), MODELS) != base
    assert attack_reference_key(_cfg(metrics=["forget_prob"]), MODELS) != base
    assert attack_reference_key(_cfg(), ["/m/other-oracle", "/m/target"]) != base
    # Quantization is not part of the reference, and a trial's own train.lr does not change the attack.
    assert attack_reference_key(_cfg(quantize={"bits": [4]}), MODELS) == base
    searched = _cfg().model_copy(update={"train": _cfg().train.model_copy(update={"lr": 3e-3})})
    assert attack_reference_key(searched, MODELS) == base


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_the_oracle_model_is_prepares_or_one_saved_in_oracle_path(tmp_path: Path):
    built = tmp_path / "prepared" / "k"
    prepared = Prepared(str(built / "target" / "final_model"), None, {"key": "k"})
    assert oracle_model_dir(_cfg(), prepared) is None  # prepare built no oracle model there
    oracle = _model(built / "oracle" / "final_model")
    assert oracle_model_dir(_cfg(), prepared) == oracle

    user = Prepared(str(tmp_path / "target"), None, {})
    holds_reference_only = tmp_path / "oracle-ref"
    holds_reference_only.mkdir()
    cfg = TrialConfig.model_validate({"prepare": {"enabled": False, "oracle_path": str(holds_reference_only)}})
    assert oracle_model_dir(cfg, user) is None
    path, why = attack_reference(cfg, user)
    assert path is None and "no oracle model to attack" in why
    nested = _model(holds_reference_only / "oracle" / "final_model")
    assert oracle_model_dir(cfg, user) == nested
