"""A trial's record: the resolved config, seeds, CLReg decision, target layer and method hyperparameters."""

from __future__ import annotations

from pathlib import Path

from orchestrator.trial_record import TrialRecord, build_record, describe_trial, read_record, write_record
from trainables.config import TrialConfig
from trainables.objectives import resolve_method
from trainables.report_keys import TRIAL_RECORD_FILE

BASE = TrialConfig().model_dump(mode="json", by_alias=True)


def test_the_record_resolves_what_the_trial_trains() -> None:
    record = build_record("t1", BASE, {"clreg.layer": "last-3", "method.name": "npo", "train.lr": 3e-4}, [],
                          num_layers=8)
    assert record.config == TrialConfig.model_validate({**BASE, "method": {"name": "npo"},
                                                        "clreg": {**BASE["clreg"], "layer": "last-3"},
                                                        "train": {**BASE["train"], "lr": 3e-4}}
                                                       ).model_dump(mode="json", by_alias=True)
    assert record.params == {"clreg.layer": "last-3", "method.name": "npo", "train.lr": 3e-4}
    assert record.seeds == [BASE["train"]["seed"]]  # no repeat seeds: the point's own seed
    assert record.clreg_active and record.target_layer == 5  # last-3 of 8 layers: decoder layer 8 - 3
    npo = resolve_method(TrialConfig.model_validate(record.config).method)
    assert record.method_params == npo.params and "beta" in record.method_params  # defaults filled in
    assert record.value("clreg.lambda") == 1.0 and record.value("no.such") is None


def test_seeds_one_repeat_seed_is_the_points_seed_and_several_are_kept() -> None:
    one = build_record("t", BASE, {}, [4], num_layers=8)
    assert one.seeds == [4] and one.value("train.seed") == 4
    several = build_record("t", BASE, {}, [0, 1, 2], num_layers=8)
    assert several.seeds == [0, 1, 2] and describe_trial(several)["seeds"] == "0,1,2"


def test_clreg_is_off_when_disabled_or_weighted_zero() -> None:
    for params in ({"clreg.enabled": False}, {"clreg.lambda": 0.0}):
        record = build_record("t", BASE, params, [], num_layers=8)
        assert not record.clreg_active and record.target_layer is None
        assert describe_trial(record)["clreg"] == "off" and describe_trial(record)["layer"] == ""


def test_the_file_round_trips(tmp_path: Path) -> None:
    record = build_record("t9", BASE, {"clreg.tau": 0.25}, [0, 1], num_layers=8)
    assert read_record(tmp_path) is None
    path = write_record(record, tmp_path / "t9")
    assert path == tmp_path / "t9" / TRIAL_RECORD_FILE
    assert read_record(tmp_path / "t9") == record
    assert TrialRecord.from_dict(record.__dict__) == record
