"""Bus events between the worker processes of one server, over local sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
from pathlib import Path

from simgate.bus.local import Frame, LocalBus

_HEADER = struct.Struct("!I")
BACKLOG = 10_000
logger = logging.getLogger(__name__)


class PeerLink:
    """Joins this worker's bus to those of its sibling workers.

    Worker i listens on `<directory>/<i>.sock`; every event of its bus is streamed,
    length-prefixed, to each sibling, whose bus delivers it locally. A device's event
    stream lives in one worker while messages for it are accepted in all of them.

    Events are hints ("come and fetch", "drop what you cached", "look for webhooks"):
    one dropped while a sibling restarts, or beyond the backlog, costs a delay, not a
    message, since devices poll, caches expire and the webhook dispatcher polls too.
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
        body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        packet = _HEADER.pack(len(body)) + body
        for queue in self._queues.values():
            if not queue.full():
                queue.put_nowait(packet)

    async def _pump(self, peer: int, queue: asyncio.Queue[bytes]) -> None:
        """Stream one sibling's frames, reconnecting after it restarts."""
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                packets = [await queue.get()]
                while not queue.empty():
                    packets.append(queue.get_nowait())
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
                    self._bus.receive(frame)
                except Exception:
                    logger.exception("handling an event from a sibling worker failed")
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._incoming.discard(writer)
            writer.close()
