"""The two training recipes a Ray Train worker runs: unlearning (a trial) and fine-tuning (`prepare`'s models)."""
