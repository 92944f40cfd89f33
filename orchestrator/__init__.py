"""Command line, configs, the sweep driver, search, MLflow logging and the Pareto front (runs on the driver)."""
