"""The `run` fixture: a fresh `simgate run` per test."""

from __future__ import annotations

import pytest

from tests.e2e.gateway import start_run


@pytest.fixture
async def run(tmp_path):
    process = start_run(tmp_path)
    yield process
    process.stop()
