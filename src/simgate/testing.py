"""Spawning simgate the way a user does, and waiting for it to answer.

Shipped in the package (as Starlette ships its test client) so that the test suite and the
benchmarks in bench/ drive the same real processes without importing one another.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A test server sends no push to the internet: the relay is off unless a test turns it
# on (pointing it at a local stand-in of the upstream).
TEST_ENV = {"SIMGATE_PUSH_RELAY": "false",
            "SIMGATE_PUSH_RELAY_URL": "http://127.0.0.1:9/upstream/v1"}


class SimgateProcess:
    """`simgate <command>` in a child process with its own data directory; `env` adds
    variables to this process's, and a None value removes one (the product's default)."""

    def __init__(self, command: list[str], data_dir: Path, port: int | None = None,
                 env: dict[str, str | None] | None = None, cwd: Path | None = None) -> None:
        self.port = port or free_port()
        self.cwd = cwd  # where a simgate.toml would be read
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"simgate-{self.port}.log"
        self.command = [sys.executable, "-m", "simgate", *command,
                        "--port", str(self.port), "--data-dir", str(data_dir)]
        merged = {**os.environ, **TEST_ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> SimgateProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        env=self.env, cwd=self.cwd)
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


def _in_own_loop(work: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end on a loop of its own thread (callers may be inside one)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(work()))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def pg_reachable(admin_url: str) -> bool:
    """Whether the PostgreSQL server of `admin_url` takes connections."""
    import asyncpg

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(admin_url, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await connection.close()
        return True

    return _in_own_loop(probe)


def create_pg_database(admin_url: str, template: str | None = None) -> str:
    """A new, uniquely named database on the server of `admin_url` (a copy of `template`
    when given); returns its URL. Many test runs share one server: names never repeat."""
    import asyncpg

    name = f"simgate_test_{secrets.token_hex(6)}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            copy = f' TEMPLATE "{template}"' if template else ""
            await connection.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            await connection.close()

    _in_own_loop(create)
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(admin_url: str, url: str) -> None:
    """Drop the database of `url`, closing whatever is still connected to it."""
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    _in_own_loop(drop)


def empty_pg_database(url: str) -> None:
    """Delete every row (the schema and its revision stay, and the rows migrations made
    go back to their first values) and restart the sequences,
    after ending whatever is still connected to the database (a killed process's
    sessions): the next test finds it as new."""
    import asyncpg

    async def empty() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            await connection.execute("""
                SET session_replication_role = replica;  -- no foreign key order to keep
                DO $$ DECLARE r record; BEGIN
                  FOR r IN SELECT tablename FROM pg_tables
                           WHERE schemaname = 'public'
                             AND tablename NOT IN ('alembic_version', 'credential_stamps') LOOP
                    EXECUTE format('DELETE FROM %I', r.tablename);
                  END LOOP;
                  -- rows a migration made: back to the values it made them with
                  UPDATE credential_stamps SET value = 0;
                  FOR r IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
                    EXECUTE format('ALTER SEQUENCE %I RESTART', r.sequencename);
                  END LOOP;
                END $$;
                SET session_replication_role = DEFAULT;""")
        finally:
            await connection.close()

    _in_own_loop(empty)
