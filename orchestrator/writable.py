"""Whether a store's local path can be written, found out before anything is created and leaving nothing behind.

`os.access` says yes to root where nothing can be created (/proc, read-only mounts), so a folder is probed with a
real write: a temporary folder made and removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


def write_problem(path: Path) -> str | None:
    """Why `path` (a file or folder, existing or to be created with its missing parents) cannot be written, in
    words naming the path at fault; None when it can."""
    path = Path(path).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing == path and not path.is_dir():
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
        folder = path.parent  # rewritten in place: SQLite also writes its journal beside it
    elif not existing.is_dir():
        return f"{existing} is a file, not a directory"
    else:
        folder = existing
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".clreg-probe-", dir=folder))
    except OSError as e:
        return f"cannot create anything in {folder} ({e.strerror})"
    return None


def sqlite_problem(path: Path) -> str | None:
    """Why the SQLite database file `path` cannot be used (not writable, or a file that is not SQLite); None when
    it can. An empty file is a valid, empty database; nothing is opened, so nothing is created."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        return f"{path} is a directory, not a database file"
    problem = write_problem(path)
    if problem or not path.is_file():
        return problem
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        return f"{path} is not an SQLite database (its first bytes are {header[:8]!r})"
    return None
