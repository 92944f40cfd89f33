"""`run_attacks` end to end in-process (one worker, a real DeepSpeed engine on CPU): a tiny Llama on the small
generated benchmark, relearned and quantized; what it reports, what it leaves on disk, and how it is scored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.config_files import load_config
from trainables.attacks.protocol import (
    NO_REFERENCE,
    QUANTIZE_SECONDS,
    RELEARN_SECONDS,
    evaluate_model,
    load_for_eval,
    read_attack,
    run_attacks,
    score_against_reference,
    write_attack,
)
from trainables.attacks.relearn import ATTACK_MODEL
from trainables.attacks.scores import quantization_stability
from trainables.config import AttackConfig, TrialConfig
from trainables.data.loading import load_benchmark
from trainables.model.loading import load_tokenizer
from trainables.model.tiny import build_tiny_llama, tokenizer_texts
from trainables.report_keys import (
    ATTACK_FILE,
    QUANT_Q,
    RELEARN_R,
    RELEARN_RECOVERY,
    ROBUSTNESS,
    quant_metric,
    relearn_metric,
)

METRICS = ["forget_prob", "forget_rouge"]


def _config(base: TrialConfig, **attack) -> TrialConfig:
    settings = {"when": "final", "metrics": METRICS, "relearn": {"steps": 2},
                "quantize": {"bits": [8, 4], "group_size": 32}, **attack}
    return base.model_copy(update={"attack": AttackConfig.model_validate(settings)})


def _hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trial(tmp_path_factory, small_overrides):
    """A trial's output directory holding a `final_model` (a randomly initialised tiny Llama: the attacks do not
    care what the model knows), its config, tokenizer and benchmark."""
    root = tmp_path_factory.mktemp("trial")
    base = load_config(TrialConfig, None, small_overrides + [f"prepare.cache_dir={root / 'cache'}"])
    bench = load_benchmark(base.data, base.prepare.cache_dir)
    model_dir = build_tiny_llama(base.model.tiny, tokenizer_texts(bench), root / "final_model",
                                 max_positions=2 * base.data.max_length)
    return root, base, bench, model_dir, load_tokenizer(str(model_dir))


def test_run_attacks_reports_every_figure_and_leaves_the_model_alone(trial, place, single_process_group):
    out, base, bench, model_dir, tok = trial
    cfg = _config(base)
    before = _hashes(model_dir)
    metrics = run_attacks(model_dir, cfg, place, tok, bench, out, before_full=None)

    expected = {relearn_metric(m, before=True) for m in METRICS} | {relearn_metric(m) for m in METRICS}
    expected |= {quant_metric(b, m) for b in (8, 4) for m in METRICS} | {QUANT_Q, RELEARN_SECONDS, QUANTIZE_SECONDS}
    assert set(metrics) == expected, sorted(metrics)
    assert all(0 <= metrics[k] <= 1 for k in expected - {RELEARN_SECONDS, QUANTIZE_SECONDS})
    assert metrics[RELEARN_SECONDS] > 0 and metrics[QUANTIZE_SECONDS] > 0
    assert not any(p.name.startswith(ATTACK_MODEL) for p in out.iterdir())  # removed once measured
    assert _hashes(model_dir) == before
    # Relearning trained on half A: half B's probability moved. Q is measured against the unattacked model.
    assert metrics[relearn_metric("forget_prob")] != metrics[relearn_metric("forget_prob", before=True)]
    full = evaluate_model(load_for_eval(model_dir, cfg), cfg, tok, bench)["forget_prob"]
    assert metrics[quant_metric(4, "forget_prob")] != full  # the 4-bit model is not the model
    assert metrics[QUANT_Q] == pytest.approx(quantization_stability(full, metrics[quant_metric(4, "forget_prob")]))

    scores, reasons = score_against_reference(metrics, None, "forget_prob")
    assert scores == {ROBUSTNESS: pytest.approx(metrics[QUANT_Q])}  # Q alone: no oracle to compare R with
    assert reasons == {RELEARN_R: NO_REFERENCE, RELEARN_RECOVERY: NO_REFERENCE}

    write_attack(metrics, out, rank=0)
    assert read_attack(out) == metrics


def test_quantization_scores_against_the_given_evaluation_and_sixteen_bits_is_the_model_itself(trial, place):
    out, base, bench, model_dir, tok = trial
    cfg = _config(base, relearn={"enabled": False}, quantize={"bits": [16, 4], "group_size": 32})
    before_full = {"forget_prob": 0.5, "forget_rouge": 0.25, "model_utility": 0.7}
    metrics = run_attacks(model_dir, cfg, place, tok, bench, out, before_full=before_full)
    assert metrics[quant_metric(16, "forget_prob")] == 0.5 and metrics[quant_metric(16, "forget_rouge")] == 0.25
    assert metrics[QUANT_Q] == pytest.approx(quantization_stability(0.5, metrics[quant_metric(4, "forget_prob")]))
    assert not any(k.startswith("relearn/") for k in metrics)


def test_score_against_reference_from_hand_made_figures():
    b, a = relearn_metric("forget_prob", before=True), relearn_metric("forget_prob")
    own = {b: 0.2, a: 0.5, QUANT_Q: 0.8}
    reference = {"oracle": {b: 0.1, a: 0.2}, "target": {b: 0.8}}
    scores, reasons = score_against_reference(own, reference, "forget_prob")
    # R = 1 - |0.3 - 0.1| / 0.4 = 0.5; recovery = 0.3 / 0.7; robustness = 2 / (1/0.5 + 1/0.8)
    assert scores == {RELEARN_R: pytest.approx(0.5), RELEARN_RECOVERY: pytest.approx(0.3 / 0.7),
                      ROBUSTNESS: pytest.approx(2 / (2 + 1.25))} and not reasons
    scores, reasons = score_against_reference(own, {"oracle": {b: 0.78, a: 0.8}, "target": {b: 0.8}}, "forget_prob")
    assert RELEARN_RECOVERY not in scores and "divide by noise" in reasons[RELEARN_RECOVERY]
    scores, reasons = score_against_reference({}, reference, "forget_prob")
    assert scores == {} and set(reasons) == {RELEARN_R, RELEARN_RECOVERY, ROBUSTNESS}


def test_only_rank_zero_writes_and_an_unreadable_file_reads_as_none(tmp_path):
    write_attack({"quant/Q": 1.0}, tmp_path, rank=1)
    assert not (tmp_path / ATTACK_FILE).exists() and read_attack(tmp_path) is None
    (tmp_path / ATTACK_FILE).write_text("{half")
    assert read_attack(tmp_path) is None
