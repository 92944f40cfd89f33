"""Atomic file writes: a reader (a resumed sweep, a report, another worker) never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then `os.replace` it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by other users' workers too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: object, indent: int | None = 1) -> None:
    """`data` as JSON, written atomically (see `write_bytes_atomic`)."""
    write_bytes_atomic(path, json.dumps(data, indent=indent).encode("utf-8"))
