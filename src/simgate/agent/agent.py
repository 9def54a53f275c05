"""The agent: pulls work from the server, picks a SIM, sends, reports states.

One send loop per SIM slot (a modem sends one SMS at a time), one loop that claims
work, one that reports, one that follows SIM health, one for backend events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import socket
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simgate.agent.backends.base import (
    DeliveryReport,
    IncomingSms,
    SendError,
    SendResult,
    SimBackend,
    SimChanged,
    SimInfo,
    Unreadable,
)
from simgate.agent.client import DeviceClient, PendingMessage, ServerError
from simgate.agent.crypto import DecryptionError, decrypt
from simgate.agent.journal import Journal, JournalMessage
from simgate.agent.outbox import Outbox
from simgate.agent.pacing import Pacer
from simgate.agent.routing import Held, SimRouting
from simgate.domain.hours import WorkHours
from simgate.domain.routing import (
    Policy,
    SimSelectionMode,
    policy_from_settings,
    worth_failover,
)
from simgate.domain.sims import SimSlot
from simgate.domain.states import ProcessState

log = logging.getLogger("simgate.agent")

FETCH_LIMIT = 100
# How long a busy agent lets pushed messages gather before its next claim (an idle one
# claims at once): one PATCH then claims many.
CLAIM_LINGER = 0.02


@dataclass(frozen=True)
class AgentConfig:
    server_url: str
    journal_path: Path
    username: str | None = None
    password: str | None = None
    name: str = field(default_factory=lambda: f"simgate agent on {socket.gethostname()}")
    sim_selection_mode: SimSelectionMode = SimSelectionMode.OS_DEFAULT
    order: str = "lifo"
    poll_interval: float = 30.0
    sim_refresh_interval: float = 30.0
    # the agent's own heartbeat (the server's "last seen" and health), always on; the
    # system:ping event is the owner's opt-in (ping.interval_seconds), apart from it
    heartbeat_interval: float = 60.0
    verify: bool = True  # the server's certificate (trusted CAs: SSL_CERT_FILE or the system's)


def to_slot(info: SimInfo) -> SimSlot:
    return SimSlot(
        slot_index=info.slot,
        status=info.state,
        phone_number=info.phone_number,
        carrier_name=info.operator,
        iccid=info.iccid,
        signal=info.signal,
        detail=info.detail,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _recipients(phones: list[str], state: ProcessState, error: str | None = None) -> list[dict]:
    return [{"phoneNumber": p, "state": state.value, "error": error} for p in phones]


class Agent:
    def __init__(self, config: AgentConfig, backend: SimBackend,
                 on_incoming: Callable[[IncomingSms], None] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.journal = Journal(config.journal_path)
        self.client = DeviceClient(config.server_url, self.journal.peek("token"),
                                   verify=config.verify)
        self.sims: list[SimSlot] = []
        self.device_id: str | None = self.journal.peek("device_id")
        self._fresh: set[str] = set()  # claimed by this run: no recipient marked yet
        self.mode = config.sim_selection_mode
        # per-SIM limits, strategies, failover and cool-downs
        self.routing = SimRouting(Policy(mode=config.sim_selection_mode),
                                  cursor=int(self.journal.peek("rr_cursor") or 0))
        self._routing_lock = asyncio.Lock()  # one batch routed and claimed at a time
        self._refreshing = False  # a look at the SIMs is under way
        self._refresh_again = False  # ... and another is wanted after it
        _forget_usage_file(config.journal_path)
        self._held: dict[str, str] = {}  # message id -> why it waits
        self.order = config.order
        self._messages_settings: dict[str, Any] = {}
        self._wake = asyncio.Event()
        # pushed messages not yet claimed: claimed together, while a claim is in flight
        # the next ones gather (one PATCH for many under load, none waited for when idle)
        self._pushed: list[PendingMessage] = []
        self._pushed_ready = asyncio.Event()
        self._claiming: set[str] = set()  # ids whose claim is in flight
        self._outbox_wake = asyncio.Event()
        self.outbox = Outbox(self.journal, {
            "states": self.client.report, "incoming": self.client.forward_incoming,
            "logs": self.client.send_logs}, self._outbox_wake)
        self._queues: dict[int | None, asyncio.Queue[JournalMessage]] = {}
        self._pacers: dict[int | None, Pacer] = {}
        self._passphrase: str | None = None
        self.work_hours = WorkHours()
        self.ping_interval: float | None = None  # ping.interval_seconds; None: no pings
        self._settings_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._on_incoming = on_incoming
        self.ready = asyncio.Event()
        self._unconfirmed_noted = False  # the log says once that sends are not confirmed

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        await self.backend.start()
        try:
            self.sims = await self._read_sims()
            await self._connect()
            await self.load_settings()  # the first claim already follows the owner's routing
            await self._announce_start()
            for slot in self.sims:
                if not slot.ready:
                    await self._record_sim(slot)
            async with asyncio.TaskGroup() as group:
                for loop in (self._event_loop, self._push_loop, self._fetch_loop,
                             self._outbox_loop,
                             self._sim_loop, self._backend_loop, self._heartbeat_loop,
                             self._ping_loop):
                    self._tasks.append(group.create_task(loop()))
                await self._recover()
                self.ready.set()
        finally:
            for queue_task in self._tasks:
                queue_task.cancel()
            await self.client.close()
            await self.backend.close()
            await self.journal.close()

    async def _announce_start(self) -> None:
        """app:started, as the Android app fires it when it starts; a server that
        cannot hear it now does not stop the agent."""
        try:
            await self.client.started(self.sims)
        except ServerError as exc:
            log.warning("could not announce the start to the server: %s", exc)

    async def _read_sims(self) -> list[SimSlot]:
        return [to_slot(info) for info in await self.backend.sims()]

    async def _connect(self) -> None:
        """Reuse the stored device token, or register with the user's credentials."""
        if self.client.token:
            try:
                await self.client.report_sims(self.sims)
                return
            except ServerError as exc:
                if exc.status != 401:
                    raise
                log.warning("device token refused; registering again")
        if not (self.config.username and self.config.password):
            raise ServerError("the agent is not registered: give --username and --password"
                              " of a user on the server")
        device_id, token = await self.client.register(
            self.config.username, self.config.password, self.config.name, self.sims
        )
        self.device_id = device_id
        await self.journal.put("device_id", device_id)
        await self.journal.put("token", token)
        log.info("registered as device %s", device_id)

    async def _recover(self) -> None:
        """After a restart: finish what was queued, re-confirm what was only claimed."""
        for message in await self.journal.with_status("queued"):
            self._enqueue(message)
        claimed = await self.journal.with_status("claimed")
        if claimed:
            await self._claim([(m, m.slot, None) for m in claimed])

    # -- claiming work ---------------------------------------------------------------

    async def _event_loop(self) -> None:
        async for event, carried in self.client.events():
            if carried:
                self._pushed.extend(carried)
                self._pushed_ready.set()
            elif event in ("connected", "MessageEnqueued", "MessagesEnqueued",
                           "MessageCancelled"):
                self._wake.set()  # a cancel is confirmed from the fetched list
            if event in ("connected", "SettingsUpdated"):
                await self.load_settings()

    async def _push_loop(self) -> None:
        """Claim what the server pushed: all that arrived since the last claim at once."""
        while True:
            await self._pushed_ready.wait()
            self._pushed_ready.clear()
            pushed, self._pushed = self._pushed, []
            try:
                await self._take(pushed)
            except ServerError as exc:
                log.warning("claiming pushed messages failed: %s", exc)
                self._wake.set()
            if self._pushed_ready.is_set():  # busy: pushes came during that claim
                await asyncio.sleep(CLAIM_LINGER)

    async def load_settings(self) -> None:
        """Apply the owner's settings; what they did not set keeps the local default."""
        try:
            settings = await self.client.settings()
        except ServerError as exc:
            log.warning("fetching settings failed: %s", exc)
            return
        messages = settings.get("messages") or {}
        self.mode = SimSelectionMode(messages.get("sim_selection_mode")
                                     or self.config.sim_selection_mode)
        self.order = (messages.get("processing_order") or self.config.order).lower()
        self._messages_settings = messages
        policy = policy_from_settings({"sim_selection_mode": self.mode.value},
                                      settings.get("routing") or {}, self.device_id)
        if policy != self.routing.policy:
            self.routing.policy = policy
            if not policy.cooldown_seconds and self.routing.paused:
                self.routing.paused.clear()
                await self._report_sims()
            await self.record("INFO", "routing", "routing applied: " + self.routing.describe(),
                              strategy=policy.strategy, failover=policy.failover,
                              sims=sorted(n + 1 for n in policy.sims))
        self._passphrase = (settings.get("encryption") or {}).get("passphrase")
        for pacer in self._pacers.values():
            pacer.configure(messages)
        self.work_hours.configure(messages)
        ping = (settings.get("ping") or {}).get("interval_seconds")
        self.ping_interval = float(ping) if ping else None
        self._settings_changed.set()
        self._settings_changed = asyncio.Event()
        self._wake.set()
        limit = (f"{messages['limit_value']} {messages['limit_period']}"
                 if messages.get("limit_value") and messages.get("limit_period") not in
                 (None, "Disabled") else "off")
        log.info("settings applied: SIM selection %s, order %s, work hours %s, ping %s, "
                 "send limit %s", self.mode.value, self.order, self.work_hours.describe(),
                 f"every {ping} s" if ping else "off", limit)

    async def _fetch_loop(self) -> None:
        while True:
            closed = self.work_hours.wait()  # look again when the work hours begin
            with contextlib.suppress(TimeoutError):  # wait_for (3.11) may drop a cancel
                async with asyncio.timeout(min(self.config.poll_interval, closed or math.inf)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self._fetch_once() >= FETCH_LIMIT and not self.work_hours.wait():
                    pass
            except ServerError as exc:
                log.warning("fetching messages failed: %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _fetch_once(self) -> int:
        pending = await self.client.pending(self.order, FETCH_LIMIT)
        if self._held and len(pending) < FETCH_LIMIT:  # gone: sent elsewhere, or ended
            listed = {m.id for m in pending}
            self._held = {i: why for i, why in self._held.items() if i in listed}
        await self._take(pending)
        if self._held:  # look again soon: a limit frees up, or a ttl ends the wait
            asyncio.get_running_loop().call_later(min(5.0, self.config.poll_interval),
                                                  self._wake.set)
        return sum(m.id not in self._held for m in pending)

    async def _take(self, pending: list[PendingMessage]) -> None:
        """Claim what is new among pending messages (fetched or pushed) and queue it;
        confirm the cancel of those being cancelled that this agent never claimed."""
        cancelling = [m for m in pending if m.state == ProcessState.CANCELLING.value]
        if cancelling:
            # the server kept it from being claimed, so this agent never sent it; one whose
            # claim is still in flight is settled by the claim's answer
            held = await self.journal.lookup([m.id for m in cancelling])
            in_flight = {i for i, m in held.items() if m.status == "claimed"}
            await self._confirm_cancel([m for m in cancelling if m.id not in in_flight])
            pending = [m for m in pending if m.state != ProcessState.CANCELLING.value]
        # one being claimed by the other path (a push and a fetch at once) is left to it;
        # one pushed twice is claimed once, as it was last said to be
        pending = list({m.id: m for m in pending if m.id not in self._claiming}.values())
        if not pending or self._outside_work_hours(len(pending)):
            return
        ids = {m.id for m in pending}
        self._claiming |= ids
        try:
            if not self.routing.active:
                await self._route_and_claim(pending)
                return
            async with self._routing_lock:  # the counters read are those this batch raises
                await self._route_and_claim(pending, refresh=True)
        finally:
            self._claiming -= ids

    async def _route_and_claim(self, pending: list[PendingMessage],
                               refresh: bool = False) -> None:
        known = await self.journal.lookup([m.id for m in pending])
        if refresh:
            phones = {p for m in pending if m.id not in known for p in m.phone_numbers}
            if phones:
                self.routing.usage, self.routing.contacts = await self.client.usage(
                    sorted(phones))
        cursor = self.routing.cursor
        fresh: list[tuple[JournalMessage, int | None, str | None]] = []
        for message in pending:
            stored = known.get(message.id)
            if stored is not None and stored.status == "claimed":
                fresh.append((stored, stored.slot, None))
            elif stored is None:
                try:
                    slot, error = self._route(message)
                except Held as exc:
                    await self._hold(message, str(exc), exc.paused)
                    continue
                self._held.pop(message.id, None)
                self._fresh.add(message.id)
                fresh.append((JournalMessage(message.id, asdict(message), slot, "claimed"),
                              slot, error))
        await self.journal.claim_routed(
            [(m.id, m.body, slot) for m, slot, _ in fresh],
            str(self.routing.cursor) if self.routing.cursor != cursor else None)
        await self._claim(fresh)

    def _outside_work_hours(self, waiting: int) -> bool:
        """True outside the owner's work hours: nothing is claimed then, so messages stay
        Pending (and cancellable) until the window opens."""
        closed = self.work_hours.wait()
        if closed:
            log.info("outside work hours (%s): %d message(s) wait %.0f s for the window",
                     self.work_hours.describe(), waiting, closed)
        return closed > 0

    def _route(self, message: PendingMessage) -> tuple[int | None, str | None]:
        """The slot for a message, or an error saying why it cannot be sent; Held when
        it must wait."""
        if message.valid_until and datetime.fromisoformat(message.valid_until) < datetime.now(
            UTC
        ):
            return None, "TTL expired"
        if message.is_encrypted and not self._passphrase:
            return None, ("Can't send message: it is encrypted and this device has no"
                          " passphrase: set encryption.passphrase in the settings")
        return self.routing.route(message, self.sims, self.backend.default_slot)

    async def _sim_failed(self, slot: int | None, exc: SendError) -> None:
        """A send failed: for a SIM or network reason, look at the SIMs at once (a card
        pulled, a PIN, a network lost is reported now, not at the next poll), and count
        it towards the SIM's cool-down."""
        slot = self.backend.default_slot if slot is None else slot
        if slot is None or not worth_failover(exc.code, exc.permanent):
            return
        self._spawn(self.refresh_sims())
        pause = self.routing.failed(slot, exc)
        if pause is None:
            return
        until, why = pause
        await self.record("WARN", "routing", f"SIM {slot + 1} paused for "
                          f"{self.routing.policy.cooldown_seconds} s: {why}",
                          simNumber=slot + 1, pausedUntil=until.isoformat())
        await self._report_sims()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _report_sims(self) -> None:
        """The SIMs as last read, with their cool-downs, to the server (health, routing)."""
        try:
            await self.client.report_sims(self.routing.with_pauses(self.sims))
        except ServerError as exc:
            log.warning("reporting SIM state failed: %s", exc)

    async def _hold(self, message: PendingMessage, why: str, leave: bool = False) -> None:
        """Leave a message Pending while its SIMs are at their limits; said once in the
        logs and in the message's state (`reason`). It fails at its ttl/validUntil like any
        message not yet sent."""
        if self._held.get(message.id) != why:
            await self.record("WARN", "routing", f"message {message.id} waits: {why}",
                              messageId=message.id, reason=why)
            await self.report([{"id": message.id, "state": ProcessState.PENDING.value,
                                "reason": why, **({"failover": True} if leave else {})}])
        self._held[message.id] = why

    async def _claim(self, items: list[tuple[JournalMessage, int | None, str | None]]) -> None:
        """Report Processed (or Failed) and queue only what the server confirms."""
        if not items:
            return
        patch = []
        for message, slot, error in items:
            phones = message.body["phone_numbers"]
            if error:
                patch.append({"id": message.id, "state": "Failed",
                              "recipients": _recipients(phones, ProcessState.FAILED, error),
                              "states": {"Failed": _now()}})
            else:
                patch.append({"id": message.id, "state": "Processed",
                              "simNumber": None if slot is None else slot + 1,
                              "recipients": _recipients(phones, ProcessState.PROCESSED),
                              "states": {"Processed": _now()}})
        result = await self.client.report(patch)
        confirmed = [m for m, _, error in items
                     if not error and result.get(m.id) == ProcessState.PROCESSED.value]
        await self.journal.settle([m.id for m in confirmed],
                                  [m.id for m, _, _ in items if m not in confirmed])
        for message in confirmed:
            self._enqueue(message)
        cancelled = [m for m, _, error in items
                     if not error and result.get(m.id) == ProcessState.CANCELLING.value]
        await self._confirm_cancel([PendingMessage(**m.body) for m in cancelled])

    async def _confirm_cancel(self, messages: list[PendingMessage]) -> None:
        """Tell the server these messages were not sent: their cancel can end. Said at
        once, not through the outbox: if it is lost, the next fetch asks again."""
        if messages:
            await self.client.report([
                {"id": m.id, "state": "Cancelled",
                 "recipients": _recipients(m.phone_numbers, ProcessState.CANCELLED),
                 "states": {"Cancelled": _now()}} for m in messages])

    # -- sending ---------------------------------------------------------------------

    def _enqueue(self, message: JournalMessage) -> None:
        queue = self._queues.get(message.slot)
        if queue is None:
            queue = self._queues[message.slot] = asyncio.Queue()
            pacer = self._pacers[message.slot] = Pacer()
            pacer.configure(self._messages_settings)
            self._tasks.append(asyncio.create_task(self._send_loop(queue, pacer)))
        queue.put_nowait(message)

    async def _send_loop(self, queue: asyncio.Queue[JournalMessage], pacer: Pacer) -> None:
        while True:
            message = await queue.get()
            while closed := self.work_hours.wait():  # claimed before the window closed
                log.info("outside work hours (%s): %s waits %.0f s", self.work_hours.describe(),
                         message.id, closed)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(closed, 60.0)):
                        await self._settings_changed.wait()
            await pacer.wait(message.body.get("priority", 0))
            rate = self.routing.rate(message.slot)
            await rate.wait(message.body.get("priority", 0))
            try:
                await self._send(message)
            except Exception:  # keep the slot alive whatever one message does
                log.exception("sending %s failed unexpectedly", message.id)
            rate.done()

    async def _send(self, message: JournalMessage) -> None:
        body = message.body
        if message.id in self._fresh:  # spare the journal a read per message
            self._fresh.discard(message.id)
            already: dict[int, str] = {}
        else:
            already = await self.journal.recipient_status(message.id)
        recipients = []
        last_sent: int | None = None  # marked with the report, in the same transaction
        last = len(body["phone_numbers"]) - 1
        attempts: list[dict[str, Any]] = []  # every try, failovers included
        sent_slot = message.slot  # the SIM that sent, after any failover
        leave = True  # no SIM here could send to anyone, each for a SIM or network reason
        for position, phone in enumerate(body["phone_numbers"]):
            previous = already.get(position)
            if previous == "sending":
                await self.journal.mark_recipient(message.id, position, "failed")
                recipients.append({"phoneNumber": phone, "state": "Failed", "error": (
                    "interrupted while sending; not repeated to avoid a duplicate SMS")})
                continue
            if previous is not None:
                continue  # reported before the restart
            try:
                number, text, data = await self._readable(body, phone)
            except DecryptionError as exc:
                await self.journal.mark_recipient(message.id, position, "failed")
                recipients.append({"phoneNumber": phone, "state": "Failed",
                                   "error": f"Can't send message: {exc}"})
                leave = False
                continue
            await self.journal.mark_recipient(message.id, position, "sending")
            try:
                result, slot = await self._send_through(message, phone, number, text, data,
                                                        attempts)
            except SendError as exc:
                await self.journal.mark_recipient(message.id, position, "failed")
                recipients.append({"phoneNumber": phone, "state": "Failed", "error": str(exc)})
                leave = leave and self.routing.may_leave(body, exc, len(attempts))
                sim = attempts[-1]["simNumber"]
                await self.record("ERROR", "sim", f"sending {message.id} through SIM "
                                  f"{sim or 'default'} failed: {exc}", messageId=message.id,
                                  simNumber=sim, code=exc.code, permanent=exc.permanent)
                continue
            if position == last:
                last_sent = position
            else:
                await self.journal.mark_recipient(message.id, position, "sent")
            if not result.confirmed and not self._unconfirmed_noted:
                self._unconfirmed_noted = True
                await self.record(
                    "INFO", "sim", "SMS are handed to the phone, which does not say whether "
                    "they went out: Sent means handed over, not confirmed, and no delivery "
                    "report will come", messageId=message.id)
            sent_slot = slot
            if (body["with_delivery_report"] and result.references and slot is not None
                    and await self.journal.add_parts(slot, result.references,
                                                     message.id, phone, delivery_items)):
                self._outbox_wake.set()  # reports that beat the send's answer
            recipients.append({"phoneNumber": phone, "state": "Sent", "error": None})
        reports = []
        if recipients:
            sent = any(r["state"] == "Sent" for r in recipients)
            state = "Sent" if sent else "Failed"
            leave = leave and not sent and len(recipients) == len(body["phone_numbers"])
            log.info("message %s through SIM %s: %s", message.id,
                     "default" if sent_slot is None else sent_slot + 1, state)
            reports.append({"id": message.id, "state": state, "recipients": recipients,
                            "simNumber": None if sent_slot is None else sent_slot + 1,
                            "states": {state: _now()}, "attempts": attempts,
                            **({"failover": True} if leave else {})})
            if leave:  # the server hands it to another device, if it has one that can send
                log.info("message %s: no SIM of this device could send it; another device"
                         " may", message.id)
        await self.journal.finish(message.id, reports, last_sent)  # done, report queued
        if reports:
            self._outbox_wake.set()

    async def _send_through(self, message: JournalMessage, phone: str, number: str,
                            text: str | None, data: str | None,
                            attempts: list[dict[str, Any]]) -> tuple[SendResult, int | None]:
        """Send to one recipient through the message's SIM, then, if it fails for a SIM or
        network reason and the caller did not pin the SIM, through the device's next ready
        SIM, up to routing.max_attempts. Each try is appended to `attempts`; the last
        SendError is raised when none worked."""
        body = message.body
        slot, tried = message.slot, set()
        while True:
            try:
                result = await self.backend.send(
                    slot, number, text=text, data=base64.b64decode(data) if data else None,
                    port=body["port"], delivery_report=body["with_delivery_report"])
            except SendError as exc:
                attempts.append(self._attempt(slot, phone, str(exc)))
                tried.add(self.backend.default_slot if slot is None else slot)
                await self._sim_failed(slot, exc)
                following = self.routing.failover_slot(body, phone, exc, tried, len(attempts),
                                                       self.sims, self.backend.default_slot)
                if following is None:
                    raise
                log.warning("message %s: SIM %s failed (%s), trying SIM %d", message.id,
                            "default" if slot is None else slot + 1, exc, following + 1)
                slot = following
                continue
            attempts.append(self._attempt(slot, phone, None))
            self.routing.sent(self.backend.default_slot if slot is None else slot)
            return result, slot

    def _attempt(self, slot: int | None, phone: str, error: str | None) -> dict[str, Any]:
        return {"simNumber": None if slot is None else slot + 1, "deviceId": self.device_id,
                "error": error, "at": _now()}

    async def _readable(self, body: dict[str, Any],
                        phone: str) -> tuple[str, str | None, str | None]:
        """Number, text and data (base64) for the radio, decrypted if the client encrypted."""
        if not body.get("is_encrypted"):
            return phone, body["text"], body["data"]
        passphrase = self._passphrase
        if not passphrase:
            raise DecryptionError("encrypted, and this device has no passphrase")

        async def plain(value: str | None) -> str | None:
            if value is None:
                return None
            return await asyncio.to_thread(decrypt, passphrase, value)

        return await plain(phone) or "", await plain(body["text"]), await plain(body["data"])

    # -- reporting -------------------------------------------------------------------

    async def record(self, priority: str, module: str, message: str, **context: Any) -> None:
        """A log entry for the server's /logs (and the local log)."""
        log.log(logging.getLevelName(priority.replace("WARN", "WARNING")), message)
        await self.journal.queue("logs", [{"priority": priority, "module": module,
                                           "message": message, "context": context or None,
                                           "createdAt": _now()}])
        self._outbox_wake.set()

    async def report(self, items: list[dict[str, Any]]) -> None:
        """Queue state reports durably; the outbox loop delivers them in batches."""
        await self.journal.queue("states", items)
        self._outbox_wake.set()

    async def _outbox_loop(self) -> None:
        """Reports, incoming SMS and logs to the server; an item it cannot take is set
        aside, never the end of the loop (see `simgate.agent.outbox`)."""
        await self.outbox.run()

    # -- SIM health and backend events ----------------------------------------------

    async def _sim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sim_refresh_interval)
            await self.refresh_sims()

    async def refresh_sims(self) -> None:
        """Read the SIMs; report and log what changed. Asked again while reading, it reads
        once more after (what was asked about may have changed after the first read)."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        try:
            while True:
                self._refresh_again = False
                await self._refresh_once()
                if not self._refresh_again:
                    return
        finally:
            self._refreshing = False

    async def _refresh_once(self) -> None:
        sims = await self._read_sims()
        if sims != self.sims:
            before = {s.slot_index: s.status for s in self.sims}
            for slot in sims:
                if before.get(slot.slot_index) is not slot.status:
                    await self._record_sim(slot)
            self.sims = sims
            await self._report_sims()

    async def _record_sim(self, slot: SimSlot) -> None:
        priority = ("INFO" if slot.ready else "WARN" if slot.status.value in ("Absent", "Unknown")
                    else "ERROR")
        text = f"SIM {slot.sim_number} is {slot.status.value}"
        await self.record(priority, "sim", f"{text}: {slot.detail}" if slot.detail else text,
                          simNumber=slot.sim_number, state=slot.status.value,
                          signal=slot.signal, operator=slot.carrier_name)

    async def _backend_loop(self) -> None:
        async for event in self.backend.events():
            if isinstance(event, SimChanged):  # nothing to acknowledge
                log.info("SIM %s: the modem says %s; reading the SIMs",
                         "?" if event.slot is None else event.slot + 1, event.said)
                self._spawn(self.refresh_sims())
                continue
            try:
                if isinstance(event, DeliveryReport):
                    await self._on_delivery(event)
                elif isinstance(event, IncomingSms):
                    await self._on_sms(event)
                    if self._on_incoming is not None:
                        self._on_incoming(event)
                elif isinstance(event, Unreadable):
                    await self.outbox.keep("incoming", json.dumps({
                        "simNumber": None if event.slot is None else event.slot + 1,
                        "pdu": event.raw}), event.reason)
            except Exception:  # not journaled: the backend keeps it, the loop goes on
                log.exception("handling %s from the SIM backend failed", type(event).__name__)
                continue
            if event.acknowledge is not None:  # journaled: the backend may let go of it
                try:
                    await event.acknowledge()
                except Exception as exc:  # taken again later, and journaled once
                    log.warning("acknowledging %s to the SIM backend failed: %s",
                                type(event).__name__, exc)

    async def _on_sms(self, sms: IncomingSms) -> None:
        """Forward an incoming SMS durably, with the SIM that received it."""
        own = next((s.phone_number for s in self.sims
                    if sms.slot is not None and s.slot_index == sms.slot), None)
        item: dict[str, Any] = {
            "id": sms.ident, "sender": sms.sender, "recipient": sms.recipient or own,
            "receivedAt": sms.received_at.isoformat(),
        }
        if sms.slot is not None:  # unknown (Termux): absent rather than wrong
            item["simNumber"] = sms.slot + 1
        if sms.data is not None:
            item["dataMessage"] = {"data": base64.b64encode(sms.data).decode(),
                                   "port": sms.port or 0}
        else:
            item["message"] = sms.text or ""
        await self.journal.queue("incoming", [item])
        self._outbox_wake.set()
        if sms.slot is not None:  # Sticky: the server keeps it too, once forwarded
            self.routing.contacts[sms.sender] = sms.slot
        log.info("SMS from %s received on %s", sms.sender,
                 "an unknown SIM" if sms.slot is None else f"SIM {sms.slot + 1}")

    async def _heartbeat_loop(self) -> None:
        """Tell the server the device is alive (its health and "last seen")."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                await self.client.heartbeat()
            except ServerError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _ping_loop(self) -> None:
        """The system:ping event, only when the owner set ping.interval_seconds (as the app)."""
        while True:
            changed = self._settings_changed
            if self.ping_interval is None:
                await changed.wait()
                continue
            try:
                async with asyncio.timeout(self.ping_interval):
                    await changed.wait()
                continue  # settings changed: start over with the new interval
            except TimeoutError:
                pass
            try:
                await self.client.ping(self.health())
            except ServerError as exc:
                log.warning("ping failed: %s", exc)

    def health(self) -> dict[str, Any]:
        """Per-SIM checks as the health endpoints show them."""
        checks = {}
        paused = self.routing.paused_now()
        for slot in self.sims:
            status = ("pass" if slot.ready else "warn" if slot.status.value in ("Absent", "Unknown")
                      else "fail")
            description = slot.detail or f"SIM {slot.sim_number} is {slot.status.value}"
            if slot.slot_index in paused:
                status = "warn" if status == "pass" else status
                description += f"; {paused[slot.slot_index]}"
            checks[f"sim:{slot.sim_number}"] = {
                "status": status,
                "description": description,
                "observedValue": slot.signal, "observedUnit": "csq",
            }
        checks.update(self.outbox.checks())
        statuses = {c["status"] for c in checks.values()}
        overall = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
        return {"status": overall, "checks": checks}

    async def _on_delivery(self, report: DeliveryReport) -> None:
        """Journaled at once, in the transaction that settles it (or keeps it for later)."""
        if await self.journal.file_report(report.slot, report.reference, {
                "delivered": report.delivered, "status": report.status,
                "at": report.at.isoformat()}, delivery_items):
            self._outbox_wake.set()


def _forget_usage_file(journal: Path) -> None:
    """Earlier agents kept routing counters in a file beside the journal; the server
    keeps them now."""
    for suffix in (".usage", ".usage-wal", ".usage-shm"):
        journal.with_name(journal.name + suffix).unlink(missing_ok=True)


def delivery_items(report: dict[str, Any], message_id: str, phone: str,
                   left: int) -> list[dict[str, Any]]:
    """The state reports one status report makes: Failed at once, Delivered once every
    part of the text to that number is reported."""
    if not report["delivered"]:
        return [{"id": message_id, "state": "Failed", "recipients": [{
            "phoneNumber": phone, "state": "Failed",
            "error": f"Delivery failed: status 0x{report['status']:02x}"}]}]
    if left:
        return []
    return [{"id": message_id, "state": "Delivered", "recipients": [{
        "phoneNumber": phone, "state": "Delivered", "error": None}],
        "states": {"Delivered": report["at"]}}]
