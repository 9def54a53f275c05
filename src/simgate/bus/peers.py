"""Bus events between the worker processes of one server, over local sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
from collections.abc import Iterable
from pathlib import Path

from simgate.bus.local import Frame, LocalBus

_HEADER = struct.Struct("!I")
BACKLOG = 10_000
logger = logging.getLogger(__name__)


class PeerLink:
    """Joins this worker's bus to those of its sibling workers.

    Worker i listens on `<directory>/<i>.sock` and streams events, length-prefixed, to its
    siblings, whose buses deliver them locally. A device's event stream lives in one
    worker while messages for it are accepted in all: workers tell each other which
    devices they hold streams for, and a push goes only where its device is. A worker
    that (re)starts says hello, and the others tell it what they hold.

    Events are hints ("come and fetch", "drop what you cached", "look for webhooks"):
    one dropped while a sibling restarts, beyond the backlog, or sent in the instant
    before a stream's news reached this worker, costs a delay, not a message, since
    devices fetch when they connect and poll, caches expire, and the webhook dispatcher
    polls too.
    Frames are pickled: the directory is private to the user running the server, so
    only its own workers can reach the sockets.
    """

    def __init__(self, bus: LocalBus, directory: Path, index: int, count: int) -> None:
        self._bus = bus
        self._directory = directory
        self._index = index
        self._count = count
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._incoming: set[asyncio.StreamWriter] = set()
        self._holders: dict[str, set[int]] = {}  # device id -> siblings holding its stream
        self._restarted: set[int] = set()  # siblings whose old connection is stale

    def _path(self, index: int) -> str:
        return str(self._directory / f"{index}.sock")

    async def start(self) -> None:
        # a socket file left by this worker's predecessor is replaced
        self._server = await asyncio.start_unix_server(self._receive, path=self._path(self._index))
        for peer in range(self._count):
            if peer != self._index:
                queue: asyncio.Queue[bytes] = asyncio.Queue(BACKLOG)
                self._queues[peer] = queue
                self._tasks.append(asyncio.create_task(self._pump(peer, queue)))
        self._bus.forward = self._send
        self._broadcast(("hello", self._index))

    async def close(self) -> None:
        self._bus.forward = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            for writer in self._incoming:
                writer.close()
            await self._server.wait_closed()

    def _send(self, frame: Frame) -> None:
        """An event of this worker's bus, to the siblings it concerns."""
        if frame[0] == "push":
            self._enqueue(self._holders.get(frame[1], ()), frame)
        elif frame[0] == "stream":
            self._broadcast(("stream", self._index, *frame[1:]))
        else:
            self._broadcast(frame)

    def _on_frame(self, frame: Frame) -> None:
        """An event from a sibling: who holds which stream, or one for the bus."""
        kind = frame[0]
        if kind == "hello":
            self._restarted.add(frame[1])
            self._forget(frame[1])
            self._enqueue([frame[1]], ("streams", self._index, self._bus.devices_streaming()))
        elif kind == "streams":
            self._forget(frame[1])
            for device_id in frame[2]:
                self._holders.setdefault(device_id, set()).add(frame[1])
        elif kind == "stream":
            _, peer, device_id, open_ = frame
            if open_:
                self._holders.setdefault(device_id, set()).add(peer)
            else:
                self._drop(device_id, peer)
        else:
            self._bus.receive(frame)

    def _forget(self, peer: int) -> None:
        for device_id in [d for d, peers in self._holders.items() if peer in peers]:
            self._drop(device_id, peer)

    def _drop(self, device_id: str, peer: int) -> None:
        peers = self._holders.get(device_id, set())
        peers.discard(peer)
        if not peers:
            self._holders.pop(device_id, None)

    def _broadcast(self, frame: Frame) -> None:
        self._enqueue(self._queues, frame)

    def _enqueue(self, peers: Iterable[int], frame: Frame) -> None:
        packet = b""
        for peer in peers:
            queue = self._queues.get(peer)
            if queue is None or queue.full():
                continue
            if not packet:
                body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
                packet = _HEADER.pack(len(body)) + body
            queue.put_nowait(packet)

    async def _pump(self, peer: int, queue: asyncio.Queue[bytes]) -> None:
        """Stream one sibling's frames, reconnecting after it restarts."""
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                packets = [await queue.get()]
                while not queue.empty():
                    packets.append(queue.get_nowait())
                if writer is not None and peer in self._restarted:
                    writer.close()  # it went to the sibling's predecessor
                    writer = None
                self._restarted.discard(peer)
                if writer is None or writer.is_closing():
                    try:
                        _, writer = await asyncio.open_unix_connection(self._path(peer))
                    except OSError:
                        writer = None  # not listening (yet): these hints are dropped
                        continue
                writer.write(b"".join(packets))
                try:
                    await writer.drain()
                except OSError:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._incoming.add(writer)
        try:
            while True:
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                frame = pickle.loads(await reader.readexactly(size))
                try:
                    self._on_frame(frame)
                except Exception:
                    logger.exception("handling an event from a sibling worker failed")
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._incoming.discard(writer)
            writer.close()
