"""The `run` fixture: a fresh `simgate run` per test; `restarts` for tests that kill it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from simgate.testing import SimgateProcess
from tests.e2e.gateway import start_run


@pytest.fixture
async def run(tmp_path):
    process = start_run(tmp_path)
    yield process
    process.stop()


@pytest.fixture
def restarts(tmp_path) -> Iterator[Callable[..., SimgateProcess]]:
    """Start `simgate run` on the test's data directory, as often as the test restarts it
    (after a kill -9): each one is stopped at teardown, whatever the test did."""
    started: list[SimgateProcess] = []

    def start(*args: str) -> SimgateProcess:
        started.append(process := start_run(tmp_path, *args))
        return process

    yield start
    for process in started:
        process.stop()
