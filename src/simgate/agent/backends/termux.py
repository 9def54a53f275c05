"""An Android phone's SIMs through Termux:API (`pkg install termux-api` + the app).

What the commands really answer (termux-api 0.53 `SmsSendAPI`, `SmsInboxAPI`,
`TelephonyAPI`, `ResultReturner`, `TermuxApiPermissionActivity`; termux-api-package
`termux-sms-send`, `termux-sms-list`, `termux-api`), and what this backend does about it:

- Every command exits 0. A missing permission is `{"error": "Please grant the following
  permission(s) to use this command: android.permission.X ,android.permission.Y"}` on
  stdout: recognised everywhere, and the message says which permission to grant.
- `termux-sms-send -n NUMBER [-s SLOT]` reads the text on stdin (given here, never as
  arguments) and prints nothing: a bad slot, a radio failure and success look the same,
  and no sent or delivery intent is asked for. A send is therefore *handed to the phone*,
  not confirmed (`SendResult.confirmed` False: reported Sent, never Delivered). The slot
  is checked against the phone's slot count first. Termux:API trims the text.
- `termux-telephony-deviceinfo` describes the default subscription only and does not
  say which slot that is: on a single-SIM phone its `sim_state` is the slot's; on a
  multi-SIM phone every slot is reported Unknown (sends are still tried).
- `termux-sms-list` (`-t inbox`) gives `_id`, `threadid`, `type`, `read`, `address`,
  `number`, `received` (`yyyy-MM-dd HH:mm:ss`, phone local time), `body` and `sender`
  (a contact name) but no SIM: incoming SMS carry no simNumber rather than a wrong one.
- With the Termux:API app missing or stopped, `termux-api` waits forever (it blocks in
  accept()): every call has a timeout whose message says what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
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

log = logging.getLogger(__name__)

INSTALL_HINT = ("Termux:API is not installed: run `pkg install termux-api` and install the "
                "Termux:API app")
TIMEOUT_HINT = ("check that the Termux:API app is installed from the same place as Termux "
                "(F-Droid or GitHub, not mixed), has been opened once, and is not stopped by "
                "Android's battery optimisation")
# What Android's settings call each permission Termux:API asks for.
PERMISSION_NAMES = {"SEND_SMS": "SMS", "READ_SMS": "SMS", "RECEIVE_SMS": "SMS",
                    "READ_PHONE_STATE": "Phone", "READ_CONTACTS": "Contacts"}

_SIM_STATES = {
    "ready": (SimStatus.READY, ""),
    "absent": (SimStatus.ABSENT, "no SIM inserted"),
    "pin_required": (SimStatus.PIN_REQUIRED, "SIM locked by PIN: unlock the phone's SIM"),
    "puk_required": (SimStatus.PIN_REQUIRED, "SIM locked by PUK: unlock it in the phone"),
    "network_locked": (SimStatus.NO_NETWORK, "SIM is network locked"),
    "unknown": (SimStatus.UNKNOWN, "the phone reports the SIM state as unknown"),
}


class TermuxError(Exception):
    """A Termux:API call that did not give an answer; the message says what to do."""


class TermuxPermissionError(TermuxError):
    """Termux:API answered that it lacks Android permissions."""

    def __init__(self, command: str, permissions: list[str]) -> None:
        self.permissions = permissions
        short = [p.rpartition(".")[2] for p in permissions]
        groups = sorted({PERMISSION_NAMES.get(p, p) for p in short})
        super().__init__(
            f"{command}: Termux:API lacks the permission{'s' if len(short) > 1 else ''} "
            f"{', '.join(short)}: grant {' and '.join(groups)} in Android Settings -> Apps -> "
            "Termux:API -> Permissions")


def permission_error(command: str, answer: Any) -> TermuxPermissionError | None:
    """The `{"error": "Please grant ..."}` answer as an error, or None for any other."""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return None
    message = answer["error"]
    if "grant" not in message.lower():
        return None
    listed = [p.strip() for p in message.partition(":")[2].split(",") if p.strip()]
    return TermuxPermissionError(command, listed or [message])


class TermuxBackend:
    """SIM slots of the phone this agent runs on."""

    default_slot: int | None = None  # the phone's default SIM decides

    def __init__(self, sims: int | None = None, *, state_path: Path | None = None,
                 poll_interval: float = 5.0, bin_dir: Path | None = None,
                 timeout: float = 30.0) -> None:
        self._slots = sims
        self._state_path = state_path
        self._poll_interval = poll_interval
        self._bin_dir = bin_dir
        self._timeout = timeout
        self._phone_count: int | None = sims

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

    async def _run(self, command: str, *args: str, text: str | None = None) -> str:
        """stdout of one command (with `text` on stdin), or TermuxError saying why not."""
        try:
            process = await asyncio.create_subprocess_exec(
                self._path(command), *args, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL if text is None else asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise TermuxError(INSTALL_HINT) from None
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await process.communicate(None if text is None else text.encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise TermuxError(f"{command} gave no answer within {self._timeout:g} s: "
                              f"{TIMEOUT_HINT}") from None
        output, error = out.decode(errors="replace"), err.decode(errors="replace").strip()
        with contextlib.suppress(ValueError):
            if denied := permission_error(command, json.loads(output)):
                raise denied
        if process.returncode != 0 or error:
            raise TermuxError(f"{command} failed: {error or output.strip() or process.returncode}")
        return output

    async def _json(self, command: str, *args: str) -> Any:
        output = await self._run(command, *args)
        try:
            return json.loads(output)
        except ValueError:
            raise TermuxError(f"{command} gave an answer that is not JSON: "
                              f"{output.strip()[:200]!r}") from None

    async def _device_info(self) -> dict[str, Any]:
        info = await self._json("termux-telephony-deviceinfo")
        if not isinstance(info, dict):
            raise TermuxError(f"termux-telephony-deviceinfo gave {type(info).__name__}, "
                              "not an object")
        self._phone_count = self._slots or int(info.get("phone_count") or 1)
        return info

    async def sims(self) -> list[SimInfo]:
        try:
            info = await self._device_info()
        except TermuxError as exc:
            return [SimInfo(i, SimStatus.ERROR, detail=str(exc))
                    for i in range(self._phone_count or 1)]
        count = self._phone_count or 1
        reported = str(info.get("sim_state", ""))
        state, detail = _SIM_STATES.get(reported.lower(),
                                        (SimStatus.UNKNOWN, f"SIM state {reported!r}"))
        operator = info.get("sim_operator_name") or info.get("network_operator_name") or None
        if count == 1:
            return [SimInfo(0, state, operator=operator, detail=detail)]
        # The default subscription's state, but not which slot it is in.
        default = f"{reported or 'unknown'}{f', {operator}' if operator else ''}"
        return [SimInfo(slot, SimStatus.UNKNOWN,
                        detail=f"Termux:API reports the default SIM only ({default}), not "
                               "which slot it is in: the state of this slot is unknown")
                for slot in range(count)]

    async def send(self, slot: int | None, phone_number: str, *, text: str | None = None,
                   data: bytes | None = None, port: int | None = None,
                   delivery_report: bool = True) -> SendResult:
        """Hand the SMS to the phone; Termux:API does not say whether it went out."""
        if data is not None:
            raise SendError("Can't send message: Termux:API cannot send data SMS")
        if "," in phone_number or not phone_number.strip():
            raise SendError(f"Can't send message: {phone_number!r} is not one phone number")
        args = ["-n", phone_number]
        try:
            if slot is not None:
                if self._phone_count is None:
                    await self._device_info()
                count = self._phone_count or 1
                if not 0 <= slot < count:
                    raise SendError(f"Can't send message: SIM {slot + 1} not found; this "
                                    f"phone has {count} SIM slot(s)")
                args += ["-s", str(slot)]
            output = await self._run("termux-sms-send", *args, text=text or "")
        except TermuxError as exc:
            raise SendError(f"Can't send message: {exc}",
                            permanent=isinstance(exc, TermuxPermissionError)) from None
        if output.strip():
            raise SendError(f"Can't send message: termux-sms-send said {output.strip()[:200]!r}")
        return SendResult(parts=1, confirmed=False)

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
        listing = await self._json("termux-sms-list", "-t", "inbox", "-l", "100")
        if not isinstance(listing, list):
            raise TermuxError(f"termux-sms-list gave {type(listing).__name__}, not a list")
        return [m for m in listing if isinstance(m, dict) and str(m.get("_id", "")).isdigit()]

    async def events(self) -> AsyncIterator[BackendEvent]:
        last = self._high_water()
        while True:
            try:
                messages = sorted(await self._inbox(), key=lambda m: int(m["_id"]))
            except TermuxError as exc:
                log.warning("reading the inbox failed: %s", exc)
                await asyncio.sleep(self._poll_interval)
                continue
            if last is None:  # first answer: start after what is already there
                last = int(messages[-1]["_id"]) if messages else 0
                self._remember(last)
            for message in messages:
                if int(message["_id"]) <= last:
                    continue
                last = int(message["_id"])
                yield IncomingSms(
                    slot=None,  # termux-sms-list does not say which SIM received it
                    sender=str(message.get("address") or message.get("number") or ""),
                    received_at=_received(message.get("received")), ident=f"termux:{last}",
                    text=str(message.get("body") or ""),
                )
                self._remember(last)
            await asyncio.sleep(self._poll_interval)


def _received(value: Any) -> datetime:
    """`received` is the phone's local time as yyyy-MM-dd HH:mm:ss (SimpleDateFormat)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").astimezone(UTC)
    return datetime.now(UTC)
