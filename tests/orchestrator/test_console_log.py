"""The console's own lines (trial start / end) and what `configure_logging` quiets; plain values, no Ray."""

from __future__ import annotations

import logging
import os
import re

import pytest

from orchestrator import console_log
from orchestrator.console_log import (
    configure_logging,
    done_line,
    failed_line,
    format_value,
    param_labels,
    start_line,
    stopped_line,
)

OBJECTIVES = ["forget_quality", "model_utility"]
PARAMS = ["clreg.tau", "clreg.lambda", "clreg.layer", "train.lr"]


def test_start_line_shows_the_searched_parameters_by_short_name():
    config = {"clreg.tau": 0.3127, "clreg.lambda": 0.8, "clreg.layer": "last-2", "train.lr": 0.0003,
              "clreg.enabled": True, "method.name": "simnpo"}  # fixed values: not searched, not shown
    assert start_line(3, 8, config, param_labels(PARAMS)) == \
        "trial 3/8 started: tau=0.313 lambda=0.8 layer=last-2 lr=3e-4"


def test_start_line_leaves_out_a_parameter_the_trial_does_not_have():
    assert start_line(1, 2, {"train.lr": 1e-5}, param_labels(PARAMS)) == "trial 1/2 started: lr=1e-5"


def test_done_line_shows_the_objectives_and_the_duration():
    result = {"forget_quality": 0.01234, "model_utility": 0.4311, "train/loss": 0.6, "time_total_s": 41.4}
    assert done_line(3, 8, result["time_total_s"], OBJECTIVES, result) == \
        "trial 3/8 done in 41 s: forget_quality=0.0123 model_utility=0.431"


def test_done_line_says_which_objective_is_missing():
    assert done_line(1, 1, None, OBJECTIVES, {"model_utility": 0.5}) == \
        "trial 1/1 done: forget_quality=missing model_utility=0.5"


def test_stopped_line_says_the_scheduler_stopped_it_and_when():
    line = stopped_line(2, 4, 12.2, OBJECTIVES, {"forget_quality": 0.1, "model_utility": 0.2, "epoch": 2})
    assert line == ("trial 2/4 stopped early by the scheduler after 12 s at epoch 2: "
                    "forget_quality=0.1 model_utility=0.2")


def test_failed_and_diverged_lines_say_so_with_the_reason():
    assert failed_line(5, 8, 7.6, "the training loss became inf at step 3", diverged=True) == \
        "trial 5/8 diverged after 8 s: the training loss became inf at step 3"
    assert failed_line(5, 8, None, "RuntimeError: boom", diverged=False) == "trial 5/8 failed: RuntimeError: boom"


def test_param_labels_keep_the_whole_name_where_two_share_a_last_part():
    assert param_labels(["clreg.tau", "method.lr", "train.lr"]) == {"clreg.tau": "tau", "method.lr": "method.lr",
                                                                     "train.lr": "train.lr"}


def test_param_labels_name_the_section_where_the_last_part_says_nothing_alone():
    # A methods x CLReg on/off grid printed "name=graddiff enabled=True".
    assert param_labels(["method.name", "clreg.enabled", "train.seed"]) == {
        "method.name": "method", "clreg.enabled": "clreg", "train.seed": "seed"}


@pytest.mark.parametrize(("value", "text"), [
    (0.0003, "3e-4"), (2.5e-12, "2.5e-12"), (0.31, "0.31"), (8, "8"), (12345.0, "1.23e4"), (-0.00012, "-1.2e-4"),
    (0.0, "0"), (True, "True"), ("last-2", "last-2"), (float("nan"), "nan"),
])
def test_format_value(value, text):
    assert format_value(value) == text


@pytest.fixture
def clean_env(monkeypatch):
    """No console knobs in the environment (configure_logging sets them in os.environ), restored afterwards."""
    for name in [console_log.VERBOSE_ENV, *console_log.QUIET_ENV]:
        monkeypatch.delenv(name, raising=False)
    mlflow_logger = logging.getLogger("mlflow")
    monkeypatch.setattr(mlflow_logger, "level", mlflow_logger.level)
    return monkeypatch


def test_quiet_console_skips_the_internal_worker_lines(clean_env):
    configure_logging(verbose=False)
    assert os.environ[console_log.VERBOSE_ENV] == "0" and not console_log.is_verbose()
    skip = re.compile(os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"])
    preemption = ("[2026-12-02 12:11:05,618 E 4887 4915] core_worker.cc:2465: Actor with class name: "
                  "'PreemptionWatcher' and ID: 'aeba4e35' has constructor arguments in the object store and "
                  "max_restarts > 0. If the arguments in the object store go out of scope or are lost, the actor "
                  "restart will fail.")
    assert skip.search(preemption)
    assert skip.search("DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")
    assert skip.search("WARNING: 8 PYTHON worker processes have been started on node: fea34 with address: "
                       "192.0.2.2, which is 4x the maximum expected startup concurrency (2).")
    assert not skip.search("eval: privleak missing: no holdout split")  # our own worker lines still come through
    assert not skip.search("RuntimeError: CUDA out of memory")
    assert logging.getLogger("mlflow").level == logging.WARNING
    assert console_log.ray_logging_level() == logging.WARNING


def test_a_users_own_setting_wins(clean_env):
    clean_env.setenv("RAY_DEDUP_LOGS_SKIP_REGEX", "mine")
    configure_logging(verbose=False)
    assert os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"] == "mine"


def test_verbose_keeps_everything(clean_env):
    configure_logging(verbose=True)
    assert console_log.is_verbose() and console_log.ray_logging_level() == logging.INFO
    assert not any(name in os.environ for name in console_log.QUIET_ENV)
