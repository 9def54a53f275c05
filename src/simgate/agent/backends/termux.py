"""An Android phone's SIMs through Termux:API (`pkg install termux-api` + the app).

Sends with `termux-sms-send -n NUMBER -s SLOT TEXT`: Termux:API looks the slot up with
SubscriptionManager.getActiveSubscriptionInfoForSimSlotIndex, so SLOT is the 0-based
slot index, as here. SIM state comes from `termux-telephony-deviceinfo` (it describes
the default SIM only). Incoming SMS are found by polling `termux-sms-list -t inbox`;
Termux:API gives no delivery reports and no data SMS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simgate.agent.backends.base import BackendEvent, IncomingSms, SendError, SendResult, SimInfo
from simgate.domain.sims import SimStatus

log = logging.getLogger("simgate.agent.termux")

INSTALL_HINT = ("Termux:API is not installed: run `pkg install termux-api` and install the "
                "Termux:API app")
PERMISSION_HINT = ("Termux:API lacks permission: Android Settings -> Apps -> Termux:API -> "
                   "Permissions -> allow Phone and SMS")

_SIM_STATES = {
    "ready": (SimStatus.READY, ""),
    "absent": (SimStatus.ABSENT, "no SIM inserted"),
    "pin_required": (SimStatus.PIN_REQUIRED, "SIM locked by PIN: unlock the phone's SIM"),
    "puk_required": (SimStatus.PIN_REQUIRED, "SIM locked by PUK: unlock it in the phone"),
    "network_locked": (SimStatus.NO_NETWORK, "SIM is network locked"),
}


class TermuxError(Exception):
    pass


class TermuxBackend:
    """SIM slots of the phone this agent runs on."""

    default_slot: int | None = None  # the phone's default SIM decides

    def __init__(self, sims: int | None = None, *, state_path: Path | None = None,
                 poll_interval: float = 5.0, bin_dir: Path | None = None) -> None:
        self._slots = sims
        self._state_path = state_path
        self._poll_interval = poll_interval
        self._bin_dir = bin_dir

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _path(self, command: str) -> str:
        if self._bin_dir is not None:
            return str(self._bin_dir / command)
        found = shutil.which(command)
        if found is None:
            raise TermuxError(INSTALL_HINT)
        return found

    async def _run(self, command: str, *args: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                self._path(command), *args, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise TermuxError(INSTALL_HINT) from None
        out, err = await process.communicate()
        text, error = out.decode(errors="replace"), err.decode(errors="replace").strip()
        if process.returncode != 0 or error:
            if "permission" in (error + text).lower():
                raise TermuxError(PERMISSION_HINT)
            raise TermuxError(f"{command} failed: {error or text.strip() or process.returncode}")
        if "permission" in text.lower() and not text.lstrip().startswith(("{", "[")):
            raise TermuxError(PERMISSION_HINT)
        return text

    async def sims(self) -> list[SimInfo]:
        count = self._slots or 1
        try:
            info: dict[str, Any] = json.loads(await self._run("termux-telephony-deviceinfo"))
        except (TermuxError, json.JSONDecodeError) as exc:
            return [SimInfo(i, SimStatus.ERROR, detail=str(exc)) for i in range(count)]
        count = self._slots or int(info.get("phone_count") or 1)
        state, detail = _SIM_STATES.get(str(info.get("sim_state", "")).lower(),
                                        (SimStatus.ERROR, f"SIM state {info.get('sim_state')}"))
        operator = info.get("sim_operator_name") or info.get("network_operator_name") or None
        sims = [SimInfo(0, state, operator=operator, detail=detail)]
        # Termux:API reports the default SIM only; other slots are taken as usable.
        for slot in range(1, count):
            sims.append(SimInfo(slot, SimStatus.READY if state is SimStatus.READY else state,
                                detail="state of this slot is not reported by Termux:API"))
        return sims

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        if data is not None:
            raise SendError("Can't send message: Termux:API cannot send data SMS")
        args = ["-n", phone_number]
        if slot is not None:
            args += ["-s", str(slot)]
        try:
            await self._run("termux-sms-send", *args, text or "")
        except TermuxError as exc:
            raise SendError(f"Send result: {exc}") from None
        return SendResult(parts=1)

    # -- incoming --------------------------------------------------------------------

    def _high_water(self) -> int | None:
        if self._state_path and self._state_path.exists():
            return int(json.loads(self._state_path.read_text())["last_id"])
        return None

    def _remember(self, last_id: int) -> None:
        if self._state_path:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"last_id": last_id}))
            os.replace(tmp, self._state_path)

    async def _inbox(self) -> list[dict[str, Any]]:
        return json.loads(await self._run("termux-sms-list", "-t", "inbox", "-l", "100"))

    async def events(self) -> AsyncIterator[BackendEvent]:
        last = self._high_water()
        while True:
            try:
                messages = sorted(await self._inbox(), key=lambda m: int(m["_id"]))
            except (TermuxError, json.JSONDecodeError, KeyError, ValueError) as exc:
                log.warning("reading the inbox failed: %s", exc)
                messages = []
            if last is None:  # first run: start after what is already there
                last = int(messages[-1]["_id"]) if messages else 0
                self._remember(last)
            for message in messages:
                if int(message["_id"]) <= last:
                    continue
                last = int(message["_id"])
                yield IncomingSms(
                    slot=_slot_of(message), sender=message.get("number") or "",
                    received_at=_received(message.get("received")), ident=f"termux:{last}",
                    text=message.get("body") or "",
                )
                self._remember(last)
            await asyncio.sleep(self._poll_interval)


def _slot_of(message: dict[str, Any]) -> int:
    """The receiving slot when the listing says it (sim_slot), else the first slot."""
    for key in ("sim_slot", "slot"):
        if isinstance(message.get(key), int):
            return message[key]
    return 0


def _received(value: Any) -> datetime:
    if isinstance(value, str):
        for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
            try:
                return datetime.strptime(value, layout).astimezone(UTC)
            except ValueError:
                continue
    return datetime.now(UTC)
