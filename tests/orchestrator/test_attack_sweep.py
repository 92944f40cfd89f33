"""A real sweep with attacks (README "Attacks"): robustness as a third objective (`attack.when: final`).

The sweep is the session's `attacked_sweep`; the front attack (`attack.when: front`) is tested with an interrupted
and resumed sweep in `test_sweep.py`.
"""

from __future__ import annotations

import json
import statistics

import pytest

from orchestrator import cli
from orchestrator.search import ATTR_TUNE_TRIAL
from tests.orchestrator.conftest import ROBUSTNESS_OBJECTIVES
from trainables.attacks.protocol import read_attack

pytestmark = pytest.mark.slow

FIGURES = ["relearn/forget_prob_before", "relearn/forget_prob", "quant4/forget_prob", "quant/Q", "relearn/R",
           "relearn/recovery", "relearn/robustness", "attack/relearn_seconds", "attack/quantize_seconds"]


def test_robustness_is_a_third_objective_of_the_search(attacked_sweep, prepare_cache, monkeypatch):
    env, name = attacked_sweep.env, attacked_sweep.name
    # Relearned once per prepared pair and attack: built here, or found where a front attack built it.
    assert ("attack: relearning the oracle and the target once" in attacked_sweep.console
            or "attack: reference cache hit" in attacked_sweep.console), attacked_sweep.console[-3000:]
    (reference,) = prepare_cache.rglob("attack-references/*/attack_reference.json")
    figures = json.loads(reference.read_text())
    assert set(figures) == {"oracle", "target"}
    # The target knew half B better than the oracle, and relearning only raises what a model knows of it.
    assert figures["target"]["relearn/forget_prob_before"] > figures["oracle"]["relearn/forget_prob_before"]

    _, children = env.runs(name)
    assert len(children) == 2
    study = {t.user_attrs.get(ATTR_TUNE_TRIAL): t for t in env.study(name).trials}
    for child in children:
        m = child.data.metrics
        assert set(FIGURES) <= set(m), sorted(set(FIGURES) - set(m))
        assert 0 <= m["relearn/R"] <= 1 and 0 <= m["quant/Q"] <= 1
        assert m["relearn/robustness"] == pytest.approx(statistics.harmonic_mean([m["relearn/R"], m["quant/Q"]]))
        assert m["attack/relearn_seconds"] > 0 and m["attack/quantize_seconds"] > 0
        # Optuna was told all three objectives, the same values MLflow holds.
        trial_id = child.data.tags["clreg.trial_id"]
        assert study[trial_id].values == pytest.approx([m[o] for o in ROBUSTNESS_OBJECTIVES])
        # The attack's own file beside the final model, which the attacks did not replace; no attacked copy left.
        seed0 = env.sweep_dir(name) / "trials" / trial_id / "seed-0"
        assert read_attack(seed0)["relearn/robustness"] == pytest.approx(m["relearn/robustness"])
        assert (seed0 / "final_model").is_dir() and not (seed0 / "attack_model").exists()

    monkeypatch.chdir(env.root)
    assert cli.main(["report", str(env.sweep_dir(name))]) == 0
    report = (env.sweep_dir(name) / "report" / "report.md").read_text()
    assert "## Attacks" in report and "relearn.png" in report
