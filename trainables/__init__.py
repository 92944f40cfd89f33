"""What runs inside one trial: data, model, objectives, the DeepSpeed engine and metrics.

Nothing in this package imports Ray Tune, Optuna or MLflow: a trial is a plain function of its config, so it can
be tested and benchmarked on its own and driven by any scheduler.
"""
