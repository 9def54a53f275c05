"""What simgate keeps on disk (the store, the agent's journal, the credentials `run` makes)
is for its user alone, whatever the umask."""

from __future__ import annotations

import os
import stat

from simgate.testing import SimgateProcess
from tests.conftest import wait_until


def modes(root) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


async def test_data_directory_and_its_files_are_private_under_any_umask(tmp_path):
    data = tmp_path / "new" / "data"
    process = SimgateProcess(["run"], tmp_path / "logs")
    process.command[-1] = str(data)  # a data directory that does not exist yet
    previous = os.umask(0)  # the child inherits it: everything would be world-writable
    try:
        process.start(timeout=90)
    finally:
        os.umask(previous)
    try:
        await wait_until(lambda: (data / "agent" / "journal.db").exists(), timeout=30)
        found = modes(data)
        assert {"credentials.json", "simgate.db", "agent", "agent/journal.db"} <= set(found)
        assert found["."] == 0o700 and found["agent"] == 0o700
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        open_to_others = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
        assert open_to_others == {}
    finally:
        process.stop()
