"""open-unlearning's TOFU_EVAL.json / MUSE_EVAL.json: read as the oracle reference, written from our evaluation.

A log that open-unlearning writes is built here by hand in its layout (extra keys included) and read; our own
evaluation of the tiny Llama goes to the same layout and back, and then serves as the oracle of that same model,
where forget quality is exactly 1 (KS test of a sample against itself) and PrivLeak exactly 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainables.config import DataConfig, EvalConfig
from trainables.metrics import OracleReference, evaluate
from trainables.metrics.evaluate import EvalResult
from trainables.metrics.oracle_logs import (
    OracleLogError,
    expected_log_items,
    is_open_unlearning_log,
    read_oracle_logs,
    write_open_unlearning_logs,
)

REAL_TOFU = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tofu"
CFG = EvalConfig(batch_size=4, max_new_tokens=4, layer_profile=False)
ROUND_TRIP = ["forget_truth_ratio", "forget_prob", "forget_rouge", "mia_min_k", "mia_loss", "extraction_strength",
              "exact_memorization", "forget_quality"]


def _ou_log() -> dict:
    """A retain model's TOFU_EVAL.json as open-unlearning writes it: pre-compute entries, ROUGE texts, MIA parts,
    a forget quality it could not compute (null), a NaN mean, a metric we do not have; indices out of order."""
    rouge_item = {"rouge1_recall": 0.5, "rougeL_f1": 0.4, "rougeL_recall": 0.5, "input": "Q?", "ground_truth": "A.",
                  "generation": "B."}
    return {
        "exact_memorization": {"agg_value": 0.5, "value_by_index": {"0": {"score": 0.25}, "1": {"score": 0.75},
                                                                    "2": {"score": None}}},
        "extraction_strength": {"agg_value": 0.125, "value_by_index": {"0": {"score": 0.125}}},
        "forget_Q_A_PARA_Prob": {"agg_value": 0.1, "value_by_index": {"0": {"prob": 0.1, "avg_loss": 2.302585}}},
        "forget_Q_A_PERT_Prob": {"agg_value": 0.05, "value_by_index": {"0": {"prob": [0.05, 0.05],
                                                                             "avg_loss": [2.99, 2.99]}}},
        "forget_Q_A_Prob": {"agg_value": 0.2, "value_by_index": {"0": {"prob": 0.2, "avg_loss": 1.609438}}},
        "forget_Q_A_ROUGE": {"agg_value": 0.5, "value_by_index": {"0": rouge_item}},
        "forget_quality": {"agg_value": None},
        "forget_truth_ratio": {"agg_value": 0.7, "value_by_index": {"1": {"score": 0.8}, "0": {"score": 0.5},
                                                                    "2": {"score": 1.25}}},
        "mia_gradnorm": {"agg_value": 0.9, "auc": 0.9},
        "mia_min_k": {"agg_value": 0.42, "auc": 0.42, "acc": 0.5,
                      "forget": {"agg_value": 3.1, "value_by_index": {"0": {"score": 3.1}}},
                      "holdout": {"agg_value": 3.0, "value_by_index": {"0": {"score": 3.0}}}},
        "mia_zlib": {"agg_value": float("nan"), "auc": float("nan")},
        "model_utility": {"agg_value": 0.61},
        "privleak": {"agg_value": -15.99999},
        "ra_Q_A_Prob": {"agg_value": 0.3, "value_by_index": {"0": {"prob": 0.3, "avg_loss": 1.2}}},
        "ra_Q_A_Prob_normalised": {"agg_value": 0.45, "value_by_index": {"0": {"prob": 0.45}}},
        "retain_Truth_Ratio": {"agg_value": 0.33, "value_by_index": {"0": {"score": 0.67}}},
        "wf_Q_A_ROUGE": {"agg_value": 0.9, "value_by_index": {"0": rouge_item}},
    }


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=4, sort_keys=True))  # json.dump's defaults, NaN included, as OU does
    return path


def test_a_log_in_open_unlearnings_exact_layout_is_read(tmp_path: Path) -> None:
    log = read_oracle_logs(_write(tmp_path / "TOFU_EVAL.json", _ou_log()), expected_items=3)
    assert log.reference == OracleReference(forget_truth_ratios=[0.5, 0.8, 1.25], mia_min_k_auc=0.42)
    # Our names; ra_prob is the normalised probability (the utility component), not OU's raw ra_Q_A_Prob;
    # the null forget quality, the NaN zlib AUC, pre-compute entries and gradnorm (no counterpart) are left out.
    assert log.aggregates == {"exact_memorization": 0.5, "extraction_strength": 0.125, "forget_prob": 0.2,
                              "forget_rouge": 0.5, "forget_truth_ratio": 0.7, "mia_min_k": 0.42, "model_utility": 0.61,
                              "privleak": -15.99999, "ra_prob": 0.45, "retain_truth_ratio": 0.33, "wf_rouge": 0.9}
    assert log.supplies("forget_quality") and log.supplies("privleak")
    assert read_oracle_logs(tmp_path / "TOFU_EVAL.json", expected_items=None).reference == log.reference


def test_a_log_without_truth_ratios_supplies_privleak_only(tmp_path: Path) -> None:
    data = {k: v for k, v in _ou_log().items() if k != "forget_truth_ratio"}
    log = read_oracle_logs(_write(tmp_path / "MUSE_EVAL.json", data), expected_items=None)
    assert log.reference == OracleReference(forget_truth_ratios=[], mia_min_k_auc=0.42)
    assert not log.supplies("forget_quality") and log.supplies("privleak")


@pytest.mark.parametrize(("change", "fragments"), [
    (lambda d: d["forget_truth_ratio"]["value_by_index"].pop("2"), ["2 truth ratios", "3 items"]),
    (lambda d: d["forget_truth_ratio"]["value_by_index"].update({"03": {"score": 1.0}}), ["'03'", '"0".."3"']),
    (lambda d: d["forget_truth_ratio"]["value_by_index"].update({"1": {"prob": 0.8}}),
     ['forget_truth_ratio.value_by_index["1"]', '{"score": number}']),
    (lambda d: d["forget_truth_ratio"]["value_by_index"].update({"0": {"score": float("nan")}}),
     ['value_by_index["0"]']),
    (lambda d: d["forget_truth_ratio"].update({"value_by_index": [0.5, 0.8, 1.25]}),
     ["forget_truth_ratio.value_by_index", "object of index"]),
    (lambda d: d["model_utility"].update({"agg_value": "0.61"}), ["model_utility.agg_value", "a number or null"]),
    (lambda d: d["mia_min_k"].update({"agg_value": 1.5}), ["mia_min_k.agg_value", "[0, 1]", "1.5"]),
    (lambda d: d["mia_min_k"].update({"agg_value": None}), ["mia_min_k.agg_value", "[0, 1]", "None"]),
    (lambda d: d.update({"forget_truth_ratio": 0.7}), ["forget_truth_ratio", "expected an object"]),
])
def test_malformed_logs_name_the_file_and_the_key(tmp_path: Path, change, fragments) -> None:
    data = _ou_log()
    change(data)
    path = _write(tmp_path / "TOFU_EVAL.json", data)
    with pytest.raises(OracleLogError) as err:
        read_oracle_logs(path, expected_items=3)
    assert str(path) in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_round_trip_through_open_unlearnings_layout(model, tokenizer, tofu_benchmark, tmp_path: Path) -> None:
    result = evaluate(model, tokenizer, tofu_benchmark, CFG, target_layer=1, max_length=64, metrics=ROUND_TRIP)
    path = write_open_unlearning_logs(result, "tofu", tmp_path / "out")
    assert path == tmp_path / "out" / "TOFU_EVAL.json"

    raw = json.loads(path.read_text())
    assert list(raw) == sorted(["forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "mia_min_k", "mia_loss",
                                "extraction_strength", "exact_memorization", "forget_quality"])
    ratios = result.per_item["forget_truth_ratio"]
    assert raw["forget_truth_ratio"]["value_by_index"] == {str(i): {"score": tr} for i, tr in enumerate(ratios)}
    assert raw["forget_Q_A_Prob"]["value_by_index"]["2"] == {"prob": result.per_item["forget_prob"][2]}
    assert set(raw["forget_Q_A_ROUGE"]["value_by_index"]["0"]) == {"rougeL_recall"}
    assert raw["mia_min_k"] == {"agg_value": result.aggregates["mia_min_k"], "auc": result.aggregates["mia_min_k"]}
    assert raw["forget_quality"] == {"agg_value": None}  # no oracle: missing, written as OU writes it

    log = read_oracle_logs(path, expected_log_items(tofu_benchmark))
    assert log.reference.forget_truth_ratios == ratios  # exact: JSON keeps every float digit
    assert log.reference.mia_min_k_auc == result.aggregates["mia_min_k"]
    assert log.aggregates == {k: v for k, v in result.aggregates.items() if v is not None}

    # The model scored against its own log: identical truth-ratio samples (KS p = 1) and AUCs (PrivLeak 0, under
    # open-unlearning's definitions also at this model's AUC of 1).
    again = evaluate(model, tokenizer, tofu_benchmark, CFG, target_layer=1, max_length=64, oracle=log.reference,
                     metrics=["forget_quality", "privleak"])
    assert again.aggregates == {"forget_quality": pytest.approx(1.0), "privleak": pytest.approx(0.0, abs=1e-6)}


def test_muse_results_go_to_muse_eval_json(tmp_path: Path) -> None:
    result = EvalResult(aggregates={"verbmem_rougeL_f1": 0.25, "knowmem_retain_rougeL_f1": None, "mia_min_k": 0.75,
                                    "privleak": 12.5, "entanglement_w2": math.inf},
                        per_item={"verbmem_rougeL_f1": [0.0, 0.5]})
    path = write_open_unlearning_logs(result, "muse", tmp_path)
    assert path.name == "MUSE_EVAL.json"
    raw = json.loads(path.read_text())
    assert raw == {"forget_verbmem_ROUGE": {"agg_value": 0.25, "value_by_index": {"0": {"rougeL_f1": 0.0},
                                                                                   "1": {"rougeL_f1": 0.5}}},
                   "mia_min_k": {"agg_value": 0.75, "auc": 0.75}, "privleak": {"agg_value": 12.5},
                   "retain_knowmem_ROUGE": {"agg_value": None}}  # entanglement has no OU counterpart
    log = read_oracle_logs(path, expected_items=None)
    assert log.reference == OracleReference(forget_truth_ratios=[], mia_min_k_auc=0.75)
    assert log.aggregates == {"verbmem_rougeL_f1": 0.25, "mia_min_k": 0.75, "privleak": 12.5}
    with pytest.raises(ValueError, match="allowed: muse, tofu"):
        write_open_unlearning_logs(result, "wmdp", tmp_path)


def test_our_reference_file_and_an_ou_log_are_told_apart(tmp_path: Path) -> None:
    ours = tmp_path / "oracle_reference.json"
    ours.write_text(OracleReference([0.5, 1.0], 0.6).to_json())
    assert not is_open_unlearning_log(ours)
    assert is_open_unlearning_log(_write(tmp_path / "TOFU_EVAL.json", _ou_log()))
    with pytest.raises(OracleLogError, match="no such file"):
        is_open_unlearning_log(tmp_path / "nope.json")


@pytest.mark.skipif(not REAL_TOFU.is_dir(), reason=f"real TOFU files not at {REAL_TOFU}")
def test_real_tofu_forget10_matches_the_released_retain90_logs() -> None:
    """open-unlearning's released tofu_*_retain90/TOFU_EVAL.json hold 400 forget truth ratios: forget10's rows."""
    from trainables.data.tofu import load_tofu

    counts = {forget: expected_log_items(load_tofu(DataConfig(benchmark="tofu", path=str(REAL_TOFU),
                                                              forget_split=forget, retain_split=retain,
                                                              holdout_split=None)))
              for forget, retain in (("forget01", "retain99"), ("forget10", "retain90"))}
    assert counts == {"forget01": 40, "forget10": 400}
