"""simgate's own files (the store, the agent's journal, stored credentials) are for the
user who runs it alone: directories it creates are 0700, its files 0600, whatever the
umask. A directory that already exists (the working directory, say) is left as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


def private_dir(path: Path) -> Path:
    """`path` and any missing parents, each one created here 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        directory.chmod(DIR_MODE)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path) -> Path:
    """Make `path` exist as a file readable by its owner alone, before a library opens it.

    SQLite gives a database's -wal, -shm and -journal files the database's own mode, so
    creating the database file first covers them; an older file (and its companions) made
    readable by others is closed to them."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    for companion in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm",
                                                                      "-journal"))):
        if companion.exists() and companion.stat().st_mode & 0o077:
            companion.chmod(FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a small file 0600 from its first byte (never readable by others meanwhile)."""
    private_dir(path.parent)
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(FILE_MODE)
