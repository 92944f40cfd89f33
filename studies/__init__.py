"""Studies produced with the tool itself (each module writes its own Markdown report)."""
