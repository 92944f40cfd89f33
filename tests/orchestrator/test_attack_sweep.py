"""Real sweeps with attacks (README "Attacks"): robustness as a third objective (`attack.when: final`), and a
front attack after the sweep that attacks exactly the front's trials, once.

Both run on the session's prepared model; the attack reference (the oracle and target relearned) is built by the
first sweep and found in the cache by the second.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import cli
from orchestrator.search import ATTR_TUNE_TRIAL
from trainables.attacks.protocol import read_attack
from trainables.report_keys import ATTACK_FILE

pytestmark = pytest.mark.slow

# A short attack: two relearning steps on half A, forget_prob only, 4-bit quantization.
ATTACK = ["attack.metrics=[forget_prob]", "attack.relearn.steps=2", "attack.relearn.micro_batch_size=2",
          "attack.quantize.bits=[4]"]
OBJECTIVES = ["forget_quality", "model_utility", "relearn/robustness"]
FIGURES = ["relearn/forget_prob_before", "relearn/forget_prob", "quant4/forget_prob", "quant/Q", "relearn/R",
           "relearn/recovery", "relearn/robustness", "attack/relearn_seconds", "attack/quantize_seconds"]


def _cache_dir(sweep_env) -> Path:
    (value,) = [o.partition("=")[2] for o in sweep_env.overrides if o.startswith("prepare.cache_dir=")]
    return Path(value)


def test_robustness_is_a_third_objective_of_the_search(sweep_env, monkeypatch, capfd):
    monkeypatch.chdir(sweep_env.root)
    path = sweep_env.write("robust", 2, 1, base=[*ATTACK, "attack.when=final"], objectives=OBJECTIVES)
    assert cli.main(["sweep", str(path)]) == 0
    console = "".join(capfd.readouterr())
    assert "attack: relearning the oracle and the target once" in console
    (reference,) = _cache_dir(sweep_env).rglob("attack-references/*/attack_reference.json")
    figures = json.loads(reference.read_text())
    assert set(figures) == {"oracle", "target"}
    # The target knew half B better than the oracle, and relearning only raises what a model knows of it.
    assert figures["target"]["relearn/forget_prob_before"] > figures["oracle"]["relearn/forget_prob_before"]

    parents, children = sweep_env.runs("robust")
    assert len(children) == 2
    study = {t.user_attrs.get(ATTR_TUNE_TRIAL): t for t in sweep_env.study("robust").trials}
    for child in children:
        m = child.data.metrics
        assert set(FIGURES) <= set(m), sorted(set(FIGURES) - set(m))
        assert 0 <= m["relearn/R"] <= 1 and 0 <= m["quant/Q"] <= 1
        assert m["relearn/robustness"] == pytest.approx(statistics.harmonic_mean([m["relearn/R"], m["quant/Q"]]))
        assert m["attack/relearn_seconds"] > 0 and m["attack/quantize_seconds"] > 0
        # Optuna was told all three objectives, the same values MLflow holds.
        trial_id = child.data.tags["clreg.trial_id"]
        assert study[trial_id].values == pytest.approx([m[o] for o in OBJECTIVES])
        # The attack's own file beside the final model, which the attacks did not replace; no attacked copy left.
        seed0 = sweep_env.sweep_dir("robust") / "trials" / trial_id / "seed-0"
        assert read_attack(seed0)["relearn/robustness"] == pytest.approx(m["relearn/robustness"])
        assert (seed0 / "final_model").is_dir() and not (seed0 / "attack_model").exists()

    assert cli.main(["report", str(sweep_env.sweep_dir("robust"))]) == 0
    report = (sweep_env.sweep_dir("robust") / "report" / "report.md").read_text()
    assert "## Attacks" in report and "relearn.png" in report


def test_a_front_attack_attacks_exactly_the_front_and_never_twice(sweep_env, monkeypatch, capfd):
    monkeypatch.chdir(sweep_env.root)
    path = sweep_env.write("front", 3, 1, base=[*ATTACK, "attack.when=front"])
    assert cli.main(["sweep", str(path)]) == 0
    console = "".join(capfd.readouterr())
    assert "attack: reference cache hit" in console  # built by the sweep above, same models and attack

    trials = sweep_env.sweep_dir("front") / "trials"
    _, children = sweep_env.runs("front")
    front = {c.data.tags["clreg.trial_id"] for c in children if c.data.tags.get("pareto") == "true"}
    attacked = {d.name for d in trials.iterdir() if (d / ATTACK_FILE).is_file()}
    assert front and attacked == front
    for c in children:
        on_front = c.data.tags["clreg.trial_id"] in front
        assert ("relearn/forget_prob" in c.data.metrics) == on_front
        assert ("relearn/R" in c.data.metrics) == on_front
    stamps = {t: (trials / t / ATTACK_FILE).stat().st_mtime_ns for t in attacked}

    # Resuming the finished sweep runs no trial and attacks nothing again.
    assert cli.main(["resume", str(sweep_env.sweep_dir("front"))]) == 0
    assert f"attack: every front trial ({len(front)}) is attacked already" in "".join(capfd.readouterr())
    assert {t: (trials / t / ATTACK_FILE).stat().st_mtime_ns for t in attacked} == stamps
    client = MlflowClient(sweep_env.tracking_uri)
    some = next(c for c in children if c.data.tags["clreg.trial_id"] in front)
    assert len(client.get_metric_history(some.info.run_id, "relearn/forget_prob")) == 1
