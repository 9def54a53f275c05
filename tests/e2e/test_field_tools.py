"""`simgate emulator` driven by the field's own tools: Debian's `gammu` command.

Gammu is the most used AT-modem client; if it works unchanged against the emulated modem,
the emulator speaks the standard dialect, not only simgate's. Gammu is installed here
with apt-get when missing (as root); the tests are skipped, saying why, only where that
cannot be done.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

GAMMU_TIMEOUT = 60  # seconds for one gammu command on a loaded machine


def debian_command(command: str, package: str) -> str:
    """The path of `command`, installing its Debian `package` first when missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"`{command}` is missing and cannot be installed here (needs root and "
                    f"apt-get): apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in (["apt-get", "install", "-y", "-q", package],
                    ["sh", "-c", f"apt-get update -q && apt-get install -y -q {package}"]):
        result = subprocess.run(attempt, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode == 0 and shutil.which(command):
            return shutil.which(command) or command
    pytest.skip(f"apt-get could not install {package}: {result.stderr.strip()[-300:]}")


@pytest.fixture(scope="session")
def gammu() -> str:
    return debian_command("gammu", "gammu")


class Emulator:
    """A spawned `simgate emulator`: its SIMs as (pty path, phone number)."""

    def __init__(self, sims: int = 2, *faults: str) -> None:
        command = [sys.executable, "-m", "simgate", "emulator", "--sims", str(sims)]
        for fault in faults:
            command += ["--fault", fault]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.sims: list[tuple[str, str]] = []
        assert self.process.stdout is not None
        for n in range(1, sims + 1):
            line = self.process.stdout.readline().split()
            assert line[:2] == ["SIM", str(n)] and len(line) == 4, line
            self.sims.append((line[2], line[3]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulated = Emulator(2)
    yield emulated
    emulated.stop()


def run_gammu(gammu: str, port: str, tmp_path: Path, *args: str) -> str:
    config = tmp_path / f"gammurc-{Path(port).name}"
    config.write_text(f"[gammu]\ndevice = {port}\nconnection = at\n")
    result = subprocess.run([gammu, "-c", str(config), *args], capture_output=True, text=True,
                            timeout=GAMMU_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"gammu {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def messages(listing: str) -> list[dict[str, str]]:
    """`gammu getallsms/geteachsms` output as one dict per message: its fields and text."""
    found = []
    for block in re.split(r"(?m)^Location ", listing)[1:]:
        head, _, body = block.partition("\n\n")
        fields = dict(line.split(" : ", 1) for line in head.splitlines() if " : " in line)
        fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
        fields["text"] = body.split("\n\n")[0]
        found.append(fields)
    return found


def test_gammu_identify_names_the_emulated_modem(gammu, emulator, tmp_path):
    out = run_gammu(gammu, emulator.sims[0][0], tmp_path, "identify")
    fields = {k.strip(): v.strip() for k, v in
              (line.split(" : ", 1) for line in out.splitlines() if " : " in line)}
    assert fields["Manufacturer"] == "simgate"
    assert "simgate emulated GSM modem" in fields["Model"]
    assert fields["IMEI"].isdigit() and len(fields["IMEI"]) == 15
    assert fields["SIM IMSI"].startswith("00101")


TEXTS = [  # (text, gammu sendsms options, parts)
    ("Hello from gammu @ 10:00 (GSM)", [], 1),
    ("Привет, мир! Ünïcödé", ["-unicode"], 1),
    ("A long text that gammu splits. " * 12, ["-autolen", "600"], 3),
    ("Длинный текст в UCS-2. " * 6, ["-unicode", "-autolen", "600"], 3),
]


def test_gammu_sends_from_sim_1_and_reads_the_texts_on_sim_2(gammu, emulator, tmp_path):
    """GSM-7, UCS-2 and multipart of both; Gammu sleeps about 4 s per command, so the
    four are sent first and read in one listing."""
    (port_1, number_1), (port_2, number_2) = emulator.sims
    for text, options, _ in TEXTS:
        sent = run_gammu(gammu, port_1, tmp_path, "sendsms", "TEXT", number_2, *options,
                         "-text", text)
        assert "OK, message reference=" in sent
    listed = messages(run_gammu(gammu, port_2, tmp_path, "getallsms"))
    assert len(listed) == sum(parts for *_, parts in TEXTS)
    assert all(m["Remote number"] == number_1 for m in listed)
    for text, _, parts in TEXTS:  # the parts in order make up the text
        mine = [m["text"] for m in listed if m["text"] and m["text"] in text]
        assert len(mine) == parts and "".join(mine) == text
    linked = messages(run_gammu(gammu, port_2, tmp_path, "geteachsms"))  # parts joined
    for text, options, _ in TEXTS:
        (whole,) = [m for m in linked if m["text"] == text]
        assert whole["Remote number"] == number_1
        assert whole["Coding"].startswith("Unicode" if "-unicode" in options else "Default")
