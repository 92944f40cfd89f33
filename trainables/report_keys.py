"""Keys of a run's final report that the orchestrator acts on (shared by the workers and the sweep driver)."""

# In the final report only: the run trained every epoch and evaluated the result. A trial stopped early by the
# scheduler never sends it, so its half-trained metrics are never told to Optuna as COMPLETE.
TRIAL_COMPLETE = "trial_complete"
# In the report a run ends with when its loss became NaN or inf, beside "divergence" (the reason, a string).
DIVERGED = "diverged"
DIVERGENCE_REASON = "divergence"
# Rank 0 writes a run's last report (final metrics, or the divergence) to this file in the run's output directory:
# Ray Train's `Result.metrics` holds the newest *checkpointed* report only, which is the last epoch's.
OUTCOME_FILE = "run_outcome.json"
