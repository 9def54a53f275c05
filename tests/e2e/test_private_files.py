"""What simgate keeps on disk (the store, the agent's journal, the credentials `run` makes)
is for its user alone, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from simgate.testing import SimgateProcess, free_port
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


NOBODY = 65534  # another local user


def simgate(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in message, message


def test_tls_init_makes_the_data_directory_and_keys_private_under_any_umask(tmp_path):
    data = tmp_path / "fresh" / "data"
    previous = os.umask(0)
    try:
        made = simgate("tls", "init", "--data-dir", str(data))
    finally:
        os.umask(previous)
    assert made.returncode == 0, made.stderr
    found = modes(tmp_path / "fresh")
    assert {"data", "data/tls", "data/tls/ca.key", "data/tls/server.key"} <= set(found)
    assert {name: oct(mode) for name, mode in found.items() if mode & 0o077} == {}


def test_secret_files_of_another_user_or_open_to_others_are_refused(tmp_path):
    """Another local user plants a credentials.json (their password, served) or a CA key
    in a directory open to them; a file of one's own left readable is a secret given
    away. Each is refused with the command that fixes it."""
    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    credentials = planted / "credentials.json"
    credentials.write_text(json.dumps({"username": "simgate", "password": "theirs-12345"}))
    credentials.chmod(0o600)
    os.chown(credentials, NOBODY, NOBODY)
    refused(simgate("run", "--data-dir", str(planted), "--port", str(free_port())),
            f"{credentials} belongs to another user", "chown")
    os.chown(credentials, os.getuid(), os.getgid())
    credentials.chmod(0o644)
    refused(simgate("run", "--data-dir", str(planted), "--port", str(free_port())),
            "others may use it", f"chmod 600 {credentials}")

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    refused(simgate("tls", "init", "--dir", str(theirs)), f"{theirs} belongs to another user")
    tls = tmp_path / "tls"
    assert simgate("tls", "init", "--dir", str(tls)).returncode == 0
    (tls / "ca.key").chmod(0o644)
    refused(simgate("tls", "init", "--dir", str(tls)), f"chmod 600 {tls / 'ca.key'}")
    (tls / "ca.key").chmod(0o600)
    (tls / "server.key").chmod(0o604)
    refused(simgate("serve", "--data-dir", str(tmp_path / "d"), "--tls-cert",
                    str(tls / "server.crt"), "--tls-key", str(tls / "server.key")),
            f"chmod 600 {tls / 'server.key'}")
    os.chown(tls / "server.key", NOBODY, NOBODY)
    (tls / "server.key").chmod(0o600)
    refused(simgate("serve", "--data-dir", str(tmp_path / "d"), "--tls-cert",
                    str(tls / "server.crt"), "--tls-key", str(tls / "server.key")),
            "belongs to another user")


def test_a_config_file_in_the_working_directory_is_obeyed_only_if_it_is_ones_own(tmp_path):
    config = tmp_path / "simgate.toml"
    config.write_text('port = 3999\n')
    config.chmod(0o666)
    refused(simgate("tls", "init", "--data-dir", str(tmp_path / "d"), cwd=tmp_path),
            "others may change it", "chmod go-w")
    config.chmod(0o644)
    assert simgate("tls", "init", "--data-dir", str(tmp_path / "d"),
                   cwd=tmp_path).returncode == 0
    config.write_text('password = "in-the-file"\n')
    refused(simgate("tls", "init", "--data-dir", str(tmp_path / "d"), cwd=tmp_path),
            f"chmod 600 {config}")
    config.chmod(0o600)
    os.chown(config, NOBODY, NOBODY)
    refused(simgate("tls", "init", "--data-dir", str(tmp_path / "d"), cwd=tmp_path),
            "belongs to another user")
