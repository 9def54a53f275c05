"""simgate's own files (the store, the agent's journal, stored credentials) are for the
user who runs it alone: directories it creates are 0700, its files 0600, whatever the
umask. A directory that already exists (the working directory, say) is left as it is.

A file simgate reads a secret from (a password, a private key) must be its user's own,
closed to others: another local user could otherwise plant one (and be served their
password) or read it. Such a file is refused, with the command that fixes it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


class UnsafeFile(Exception):
    """A file or directory for secrets that another user owns or may use; the message
    says how to fix it."""


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)  # root could replace any file anyway


def check_private(path: Path, info: os.stat_result, *, group_may_read: bool = False,
                  others_may_read: bool = False) -> None:
    """UnsafeFile when `path` (as `info` describes it) is another user's, or others may
    read or change it. `group_may_read`: a key kept root:ssl-cert 0640, as system
    certificates are, is fine when root owns it; `others_may_read`: a file that holds no
    secret, only trust (a config file), must still be closed to their changes."""
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    if not _trusted_owner(info.st_uid):
        raise UnsafeFile(f"{path} belongs to another user (uid {info.st_uid}), and simgate"
                         f" trusts only its own {kind}s: if it is yours,"
                         f" chown {_me()} {path}; else remove it")
    loose = 0o077
    if others_may_read:
        loose = 0o022
    elif group_may_read and info.st_uid == 0:
        loose = 0o027
    if info.st_mode & loose:
        mode = DIR_MODE if kind == "directory" else FILE_MODE
        if others_may_read:
            raise UnsafeFile(f"{path}: others may change it (mode"
                             f" {stat.S_IMODE(info.st_mode):o}): chmod go-w {path}")
        raise UnsafeFile(f"{path} holds secrets and others may use it (mode"
                         f" {stat.S_IMODE(info.st_mode):o}): chmod {mode:o} {path}")


def read_private(path: Path, *, group_may_read: bool = False) -> bytes:
    """A secret file's bytes, if it is the user's own and closed to others (checked on
    the file opened, so it cannot be swapped in between); FileNotFoundError if absent."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    with os.fdopen(descriptor, "rb") as file:
        check_private(path, os.fstat(file.fileno()), group_may_read=group_may_read)
        return file.read()


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


def write_private(path: Path, data: str | bytes) -> None:
    """Write a small file 0600 from its first byte (never readable by others meanwhile),
    as a new file put in place: a file someone else left at `path` is replaced, never
    written into."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # left by a process of that id that was killed
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
