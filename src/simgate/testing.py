"""Spawning simgate the way a user does, and waiting for it to answer.

Shipped in the package (as Starlette ships its test client) so that the test suite and the
benchmarks in bench/ drive the same real processes without importing one another.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimgateProcess:
    """`simgate <command>` in a child process with its own data directory."""

    def __init__(self, command: list[str], data_dir: Path, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"simgate-{self.port}.log"
        self.command = [sys.executable, "-m", "simgate", *command,
                        "--port", str(self.port), "--data-dir", str(data_dir)]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> SimgateProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simgate exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"simgate did not answer in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> int | None:
        """Ctrl-C, as a user stops it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode if self.process else None


def start_agent(server: SimgateProcess, data_dir: Path, username: str,
                password: str, *options: str) -> subprocess.Popen[bytes]:
    """`simgate agent --emulator 2 [options]` against a running server."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "simgate", "agent", "--server", server.url, "--emulator", "2",
         "--username", username, "--password", password, "--data-dir", str(data_dir),
         *options],
        stdout=subprocess.DEVNULL, stderr=(data_dir / "agent.log").open("ab"),
    )
