"""Writing small sweep files and reading back what a real sweep left in MLflow and Optuna."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.search import make_searcher, sweep_study_name
from orchestrator.sweep import _create_sweep_dir, resolve_space, sweep_paths
from orchestrator.sweep_config import SweepConfig
from trainables.report_keys import TRIAL_COMPLETE

# A short attack: two relearning steps on half A, forget_prob only, 4-bit quantization.
ATTACK = ["attack.metrics=[forget_prob]", "attack.relearn.steps=2", "attack.relearn.micro_batch_size=2",
          "attack.quantize.bits=[4]"]
ROBUSTNESS_OBJECTIVES = ["forget_quality", "model_utility", "relearn/robustness"]


def told_sweep(cfg: SweepConfig, results: list[dict | None], num_layers: int) -> Path:
    """A sweep folder of `cfg` (its resolved sweep file and SQLite study) whose study holds one trial per result,
    asked and told through the sweep's own searcher (None: a crashed trial), without training anything: an
    earlier sweep for `search.warm_start` to read."""
    paths = sweep_paths(cfg)
    _create_sweep_dir(paths, cfg)
    searcher = make_searcher(resolve_space(cfg), num_layers, cfg.objective_modes, cfg.search, len(results),
                             sweep_study_name(cfg.name), paths.optuna_url(cfg))
    for i, result in enumerate(results):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", None if result is None else {TRIAL_COMPLETE: 1, **result},
                                   error=result is None)
    return paths.root


@dataclass
class SweepEnv:
    """A working directory with one SQLite MLflow store and a sweeps directory, on the session's prepared model."""

    root: Path
    overrides: list[str]

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def sweep_dir(self, name: str) -> Path:
        return self.root / "sweeps" / name

    def write(self, name: str, num_trials: int, concurrent: int, seeds: list[int] = (0,), epochs: int = 1,
              space: str | dict = "clreg-default", base: list[str] = (), search: dict | None = None,
              tracking_uri: str | None = None, objectives: list[str] | None = None) -> Path:
        """A sweep file: the small trial config plus `base` overrides (dotted key=value), random sampler;
        `objectives` (all maximised) replaces the default forget quality and model utility."""
        tree: dict = {}
        for item in [*self.overrides, f"train.epochs={epochs}", *base]:
            key, _, value = item.partition("=")
            node = tree
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = yaml.safe_load(value)
        sweep = {
            "name": name,
            "base": tree,
            "space": space,
            "search": {"sampler": "random", "num_trials": num_trials, "max_concurrent": concurrent, "seed": 1,
                       "trial_seeds": list(seeds), **(search or {})},
            "storage": {"dir": str(self.root / "sweeps")},
            "mlflow": {"tracking_uri": tracking_uri or self.tracking_uri},
        }
        if objectives:
            sweep["objectives"] = [{"metric": m, "mode": "max"} for m in objectives]
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(sweep))
        return path

    def spawn_sweep(self, path: Path, **env: str) -> subprocess.Popen:
        """`clreg-sweep sweep FILE` as its own process (the driver a test interrupts or kills), output discarded;
        `env` adds environment variables."""
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(path)], cwd=self.root,
                                env=dict(os.environ, PYTHONUNBUFFERED="1", **env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def runs(self, name: str, tracking_uri: str | None = None, deleted: bool = False) -> tuple[list, list]:
        """(parent runs, child runs) of the sweep's experiment: the active ones, or those in MLflow's trash."""
        from mlflow.entities import ViewType

        client = MlflowClient(tracking_uri or self.tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return [], []
        view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
        runs = client.search_runs([exp.experiment_id], max_results=1000, run_view_type=view)
        parents = [r for r in runs if r.data.tags.get("clreg.role") == "parent"]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        return parents, children

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=sweep_study_name(name),
                                 storage=f"sqlite:///{self.sweep_dir(name) / 'optuna.db'}")

    def tune_trials(self, name: str) -> list[tuple[str, int]]:
        """(state, number of failures) of every trial in Tune's saved experiment (what `resume` continues)."""
        from ray.tune import ExperimentAnalysis

        analysis = ExperimentAnalysis(str(self.sweep_dir(name) / "tune"))
        return sorted((t.status, t.num_failures) for t in analysis.trials)


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory, small_overrides, prepare_cache) -> SweepEnv:
    return SweepEnv(tmp_path_factory.mktemp("sweeps"), small_overrides + [f"prepare.cache_dir={prepare_cache}"])


@dataclass
class FinishedSweep:
    """A sweep that ran to its end as its own `clreg-sweep sweep` process, with what that printed."""

    env: SweepEnv
    name: str
    console: str


# The attacked sweep's two trials, a grid over the learning rate: at 1e-12 an Adam step changes no fp32 weight, so
# that trial is the target model again; at 3e-3 a few SimNPO steps change the model. Its constraints keep only
# trials within 1% of the target's model utility, i.e. the untouched one (a constraint no real sweep would set,
# but one whose verdict is known before the sweep runs), and bound the attack's robustness.
UNTOUCHED_LR, CHANGED_LR = 1e-12, 3e-3
CONSTRAINED_SPACE = {"fixed": {"method.name": "simnpo", "clreg.enabled": True},
                     "parameters": {"train.lr": {"type": "grid", "values": [UNTOUCHED_LR, CHANGED_LR]}}}
CONSTRAINTS = [{"metric": "model_utility", "min": 0.99, "max": 1.01, "of": "target"},
               {"metric": "relearn/robustness", "min": 0.0}]


@pytest.fixture(scope="session")
def attacked_sweep(tmp_path_factory, small_overrides, prepare_cache) -> FinishedSweep:
    """A real 2-trial sweep whose trials are attacked as they finish (`attack.when: final`), robustness its third
    objective, under `CONSTRAINTS` (TPE is told them). Shared by the tests that read a finished sweep (the attack
    figures, the constraints, the dashboard): every sweep costs a Ray cluster and a few Ray Train runs on a 2-core
    CI machine."""
    env = SweepEnv(tmp_path_factory.mktemp("attacked"), small_overrides + [f"prepare.cache_dir={prepare_cache}"])
    name = "robust"
    path = env.write(name, 2, 1, base=[*ATTACK, "attack.when=final"], objectives=ROBUSTNESS_OBJECTIVES,
                     space=CONSTRAINED_SPACE, search={"sampler": "tpe", "constraints": CONSTRAINTS})
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(path)], cwd=env.root,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return FinishedSweep(env, name, done.stdout + done.stderr)
