"""Declarative search spaces and the shipped ablation presets."""
