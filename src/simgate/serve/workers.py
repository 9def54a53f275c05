"""Several server processes on one port, so the API uses every core.

The accept path is CPU-bound in one event loop; each worker is a whole server (its own
loop, store connections and caches) on its own SO_REUSEPORT socket, so the kernel spreads
connections evenly. The workers' buses are joined (bus.peers): a device's event stream
lives in one worker, messages for it are accepted in all. Worker 0 delivers webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import uvloop

from simgate.config import Settings, configure_logging
from simgate.serve.runner import WorkerSlot, serve_forever

logger = logging.getLogger("simgate.serve.workers")
# A worker that fails (not killed by a signal) this soon after its start would fail again.
STARTUP_GRACE = 5.0


class WorkerFailed(Exception):
    pass


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker, all on the same port (checked free by the first)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return [socket.create_server((host, port), family=family, backlog=2048, reuse_port=True)
            for _ in range(count)]


def serve_workers(settings: Settings, count: int) -> None:
    """Run `count` workers until SIGINT/SIGTERM, starting again any that dies."""
    listeners = listen(settings.host, settings.port, count)
    context = multiprocessing.get_context("spawn")
    stop: list[int] = []  # a signal handler may not take locks (threading.Event would)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, _frame: stop.append(signum))
    with tempfile.TemporaryDirectory(prefix="simgate-") as links:
        slots = [WorkerSlot(i, count, Path(links), listener)
                 for i, listener in enumerate(listeners)]
        running = [_start(context, settings, slot) for slot in slots]
        logger.info("serving on %s://%s:%d with %d workers", settings.scheme, settings.host,
                    settings.port, count)
        try:
            while True:
                time.sleep(0.5)
                if stop:  # a worker that ended now may have had the same signal
                    break
                for index, (process, started) in enumerate(running):
                    if process.is_alive():
                        continue
                    failed = (process.exitcode or 0) > 0
                    if failed and time.monotonic() - started < STARTUP_GRACE:
                        raise WorkerFailed(
                            f"worker {index} stopped at start (exit code {process.exitcode}):"
                            " see its log above")
                    logger.warning("worker %d (pid %s) ended with exit code %s: starting it"
                                   " again", index, process.pid, process.exitcode)
                    running[index] = _start(context, settings, slots[index])
        finally:
            _stop([process for process, _ in running])
            for listener in listeners:
                listener.close()


def _start(context: multiprocessing.context.SpawnContext, settings: Settings,
           slot: WorkerSlot) -> tuple[BaseProcess, float]:
    process = context.Process(target=_work, args=(settings, slot),
                              name=f"simgate-worker-{slot.index}")
    process.start()
    return process, time.monotonic()


def _stop(processes: list[BaseProcess]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL for any still there after 10 s."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _work(settings: Settings, slot: WorkerSlot) -> None:
    configure_logging()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_forever(settings, slot))
