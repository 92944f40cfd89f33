"""One trial as a Ray Train + DeepSpeed run: engine config, data schedule, training loop, checkpoints."""
