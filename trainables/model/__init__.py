"""Loading causal LMs (HF hub, local, the tiny-llama preset) and reading their layer representations."""
