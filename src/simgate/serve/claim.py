"""What a server process takes for itself before it starts: its data directory and its port."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from simgate.files import private_dir, private_file

LOCK_NAME = "simgate.pid"


class InUse(Exception):
    """Another process holds what this one needs; the message says which and what to do."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold the data directory for this process (and its children) until it exits.

    A second `run` or `serve` on the same directory would share its SQLite store, agent
    journal and credentials with the first; it is refused, naming the other process.
    """
    handle = private_file(private_dir(data_dir) / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise InUse(f"data directory {data_dir} is in use by another simgate (pid {pid}):"
                    " stop it, or give this one another --data-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def check_port(host: str, port: int) -> None:
    """Refuse early, in one line, a port that another program listens on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # other problems are told by the server itself
            raise InUse(f"port {port} on {host} is already in use by another program:"
                        f" stop it, or choose another with --port") from None


def release(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        handle.close()
