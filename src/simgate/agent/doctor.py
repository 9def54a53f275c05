"""`simgate doctor`: walks the multi-SIM troubleshooting list and says what to do.

1. each serial port opens and the modem answers AT, 2. each SIM is present and unlocked,
3. it is registered on a network with signal, 4. Termux:API is there and permitted,
5. the server is reachable and the credentials are valid, 6. webhooks are reachable,
7. the agent's journal holds nothing it had to set aside.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from simgate.agent.backends.base import SimBackend, SimInfo, SimState
from simgate.agent.journal import read_set_aside
from simgate.domain.sims import ADVICE

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""



# +CSQ below this is too weak to rely on (about -101 dBm).
WEAK_SIGNAL = 6


def sim_findings(sims: list[SimInfo]) -> list[Finding]:
    if not sims:
        return [Finding("SIM slots", "fail", "no SIM slot found",
                        "give --modem PORT for each modem, --termux or --emulator N")]
    findings = []
    for sim in sims:
        name = f"SIM {sim.slot + 1}"
        if sim.state is SimState.READY:
            findings.append(Finding(
                name, "pass",
                f"ready, {sim.phone_number or 'number unknown'} on {sim.operator or 'network'}"
                + (f", signal {sim.signal}/31" if sim.signal is not None else "")))
            if sim.signal is not None and sim.signal < WEAK_SIGNAL:
                findings.append(Finding(f"{name} signal", "warn",
                                        f"weak signal ({sim.signal}/31)",
                                        "move the modem or use an external antenna"))
        else:
            status: Status = ("warn" if sim.state in (SimState.ABSENT, SimState.UNKNOWN)
                              else "fail")
            findings.append(Finding(name, status, f"{sim.state.value}: {sim.detail}".rstrip(": "),
                                    ADVICE[sim.state]))
    return findings


def journal_findings(path: Path) -> list[Finding]:
    """What the agent on this data directory set aside: items the server refused or that
    could not be sent, kept in its journal with the reason."""
    if not path.exists():
        return []
    count, latest = read_set_aside(path)
    if not count:
        return [Finding("agent journal", "pass", "nothing set aside")]
    shown = "; ".join(f"{item.at[:19]} {item.kind}: {item.reason}" for item in latest[:3])
    return [Finding("agent journal", "warn",
                    f"{count} item(s) the server could not take are set aside; latest: {shown}",
                    f"they are kept in {path} (table set_aside); what each reason names is "
                    "what to fix")]


def serial_findings(ports: list[str]) -> list[Finding]:
    findings = []
    for port in ports:
        if not os.path.exists(port):
            findings.append(Finding(f"port {port}", "fail", "does not exist",
                                    "plug the modem in; list ports with `ls /dev/ttyUSB*`"))
        elif not os.access(port, os.R_OK | os.W_OK):
            findings.append(Finding(f"port {port}", "fail", "no permission to open it",
                                    "add your user to the dialout group and log in again"))
        else:
            findings.append(Finding(f"port {port}", "pass", "exists and can be opened"))
    return findings


def termux_findings() -> list[Finding]:
    missing = [c for c in ("termux-sms-send", "termux-sms-list", "termux-telephony-deviceinfo")
               if shutil.which(c) is None]
    if missing:
        return [Finding("Termux:API", "fail", "missing: " + ", ".join(missing),
                        "pkg install termux-api, and install the Termux:API app")]
    return [Finding("Termux:API", "pass", "commands present")]


async def backend_findings(backend: SimBackend) -> list[Finding]:
    try:
        await backend.start()
        return sim_findings(await backend.sims())
    except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
        return [Finding("SIM backend", "fail", str(exc) or type(exc).__name__,
                        "check the modem connection and run again")]
    finally:
        await backend.close()


NO_CREDENTIALS = "not given"


async def server_findings(url: str, username: str | None, password: str | None,
                          start: str = "`simgate run` (or `simgate serve`)",
                          looked_at: str = "") -> list[Finding]:
    """The server, the credentials, each device and its SIMs, the phones' warnings and
    the webhooks. `start` is how the user starts this server (advice when it is down);
    `looked_at` names where credentials were looked for (advice when none were found)."""
    findings = []
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10) as http:
        try:
            await http.get("/health/live")
        except httpx.HTTPError as exc:
            return [Finding("server", "fail", f"{url} unreachable: {exc!r}",
                            f"check the URL, or start it: {start}")]
        findings.append(Finding("server", "pass", f"{url} answers"))
        if not (username and password):
            return findings + [Finding(
                "credentials", "fail", NO_CREDENTIALS,
                "pass --username and --password" + (f"; looked at {looked_at}"
                                                    if looked_at else ""))]
        auth = (username, password)
        devices = await http.get("/3rdparty/v1/devices", auth=auth)
        if devices.status_code == 401:
            return findings + [Finding("credentials", "fail", "refused by the server",
                                       "check them, or reset with `simgate users passwd`")]
        findings.append(Finding("credentials", "pass", f"valid for {username}"))
        health = (await http.get("/health", auth=auth)).json().get("checks") or {}
        for device in devices.json():
            findings += _device_findings(device, health)
        names = {d["id"]: d["name"] for d in devices.json()}
        findings.extend(phone_findings(health, names))
        for hook in (await http.get("/3rdparty/v1/webhooks", auth=auth)).json():
            findings.append(await _webhook_finding(hook))
    return findings


def _device_findings(device: dict, health: dict[str, dict]) -> list[Finding]:
    """A device's SIMs; a device gone quiet, or one that never reported a SIM, is
    named with how to remove it."""
    name, gone = device["name"], f"`simgate devices rm {device['id']}`"
    sims = [SimInfo(slot=s["slotIndex"], state=SimState(s.get("state", "Ready")),
                    phone_number=s.get("phoneNumber"), operator=s.get("carrierName"),
                    signal=s.get("signal"), detail=s.get("detail") or "")
            for s in device.get("simCards", [])]
    if not sims:
        return [Finding(f"{name}: SIM slots", "fail", "the device reported no SIM slot",
                        f"start its agent with a modem it can open, or remove it: {gone}")]
    found = [Finding(f"{name}: {f.check}", f.status, f.detail, f.fix)
             for f in sim_findings(sims)]
    connection = health.get(f"devices:{device['id']}:connection") or {}
    if connection.get("status", "pass") != "pass":
        found.insert(0, Finding(f"{name}: connection", "warn",
                                connection.get("description", "not seen lately"),
                                f"start its agent (or the phone's app) again; if it is gone"
                                f" for good: {gone}"))
    return found


# Health checks that tell of an Android phone handed what it cannot use, by name.
PHONE_CHECKS = {"ingest": "ingest hooks", "push": "push"}


def phone_findings(checks: dict[str, dict], names: dict[str, str]) -> list[Finding]:
    """The server's warnings about its phones (an ingest URL the app refuses, a phone
    waiting for a push that never comes): the fix is in the description."""
    findings = []
    for key, check in checks.items():
        parts = key.split(":")
        if len(parts) == 3 and parts[0] == "devices" and parts[2] in PHONE_CHECKS \
                and check.get("status") != "pass":
            name = names.get(parts[1], parts[1])
            findings.append(Finding(f"{name}: {PHONE_CHECKS[parts[2]]}", "warn",
                                    check.get("description", ""),
                                    "see the detail"))
    return findings


async def _webhook_finding(hook: dict) -> Finding:
    name = f"webhook {hook['event']}"
    url = hook["url"]
    if url.lower().startswith("mailto:"):  # sent by the server's SMTP relay, not from here
        return Finding(name, "pass", f"{url}: an email through the server's SMTP relay")
    url = url[len("twilio+"):] if url.lower().startswith("twilio+") else url
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.head(url)
    except httpx.HTTPError as exc:
        return Finding(name, "fail", f"{url} unreachable: {exc!r}",
                       "check the receiver runs and this host can reach it")
    code = response.status_code
    if code in (405, 501):  # a receiver that takes only POST: up, but not proven to work
        return Finding(name, "warn", f"{url} is up but answers HEAD with {code}:"
                       " whether it takes the POSTs is not checked",
                       "watch its deliveries on the dashboard's Webhooks page")
    if code >= 500:
        return Finding(name, "fail", f"{url} answers {code}",
                       "fix the receiver: deliveries to it fail and are retried")
    return Finding(name, "pass", f"{url} answers ({code})")
