"""A real sweep under `search.constraints`: the session's `attacked_sweep`, whose two trials are known in advance to
fall on either side of its model-utility constraint (see `CONSTRAINED_SPACE` in conftest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator import cli
from orchestrator.search import ATTR_TUNE_TRIAL
from tests.orchestrator.conftest import CHANGED_LR, UNTOUCHED_LR

pytestmark = pytest.mark.slow


def test_an_infeasible_trial_stays_in_mlflow_but_off_the_front(attacked_sweep, monkeypatch, tmp_path):
    env, name = attacked_sweep.env, attacked_sweep.name
    console = " ".join(attacked_sweep.console.split())  # the console wraps long lines
    (parent,), children = env.runs(name)
    by_lr = {float(c.data.params["train.lr"]): c for c in children}
    assert set(by_lr) == {UNTOUCHED_LR, CHANGED_LR}
    untouched, changed = by_lr[UNTOUCHED_LR], by_lr[CHANGED_LR]
    target_mu = parent.data.metrics["reference/target/model_utility"]

    # Resolved once against the target, stated at the start and on the parent run.
    bounds = parent.data.tags["clreg.constraints"].splitlines()
    assert bounds == [f"{0.99 * target_mu:.4g} <= model_utility <= {1.01 * target_mu:.4g} (0.99 and 1.01 x target "
                      f"{target_mu:.4g})", "relearn/robustness >= 0"]
    assert f"constraints {'; '.join(bounds)}: trials outside them are kept but never on the front" in console
    assert "sampler tpe is told each trial's violations" in console

    # The untouched model scores as the target did; the trained one left the 1% band (both FINISHED, both logged).
    assert untouched.data.metrics["model_utility"] == pytest.approx(target_mu, rel=0.01)
    assert abs(changed.data.metrics["model_utility"] / target_mu - 1) > 0.01
    assert (untouched.info.status, changed.info.status) == ("FINISHED", "FINISHED")
    assert (untouched.data.tags["feasible"], changed.data.tags["feasible"]) == ("true", "false")
    assert "clreg.infeasible" not in untouched.data.tags
    assert changed.data.tags["clreg.infeasible"].startswith("model_utility=")
    assert re.search(r"trial [12]/2 done in \d+ s: .*, infeasible: model_utility=\S+ outside", console)

    # The front and its hypervolume count the feasible trial only.
    assert (untouched.data.tags["pareto"], changed.data.tags["pareto"]) == ("true", "false")
    assert parent.data.metrics["pareto/num_trials"] == 1
    folder = Path(MlflowClient(env.tracking_uri).download_artifacts(parent.info.run_id, "pareto", str(tmp_path)))
    table = json.loads((folder / "front.json").read_text())
    assert [row[table["columns"].index("trial_id")] for row in table["data"]] == [untouched.data.tags[
        "clreg.trial_id"]]
    assert (folder / "front.html").read_text().count("class='infeasible'") == 1  # drawn apart, greyed

    # Optuna holds each trial's violations, keyed by metric, as its constrained samplers read them.
    study = {t.user_attrs[ATTR_TUNE_TRIAL]: t for t in env.study(name).trials}
    kept, dropped = (study[c.data.tags["clreg.trial_id"]].constraints for c in (untouched, changed))
    assert set(kept) == set(dropped) == {"model_utility", "relearn/robustness"}
    assert max(kept.values()) <= 0 and dropped["model_utility"] > 0 and dropped["relearn/robustness"] <= 0

    # The report greys it: marked in the table, muted in HTML, left out of the best trials.
    monkeypatch.chdir(env.root)
    assert cli.main(["report", str(env.sweep_dir(name)), "--html"]) == 0
    report = env.sweep_dir(name) / "report"
    text = (report / "report.md").read_text()
    assert "Constraints (`search.constraints`):" in text and "1 finished trial(s) miss one" in text
    changed_id = changed.data.tags["clreg.trial_id"]
    assert f"| × | {changed_id} |" in text
    best = text[text.index("## Best trial per objective"):].split("\n\n")[1]
    assert changed_id not in best
    assert (report / "report.html").read_text().count("<tr class='muted'>") == 1
