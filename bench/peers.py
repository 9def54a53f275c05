"""simgate beside Kannel under the same load: accepting and delivering at once.

One command, one run, every system on the same machine in turn, each under the same wrk
load (one thread, 32 connections, a different recipient per request, 2 s of warm-up, then
the measured seconds), and each asked afterwards how many of the messages it accepted
reached its SIMs or its SMSC:

- `simgate run` (server, agent and two emulated SIMs in one command), on SQLite;
- `simgate serve --workers N` beside `simgate agent --emulator 2`, on SQLite and on a
  fresh PostgreSQL database (made for the run and dropped after);
- Kannel from the Debian packages `kannel` and `kannel-extras`: bearerbox with
  `store-type = file`, an SMSC of type `fake` fed to `fakesmsc -m 0`, and smsbox with a
  sendsms-user, configured in a temporary directory and started and stopped by PID;
- `simgate serve` as 1, 2 and 4 replicas (processes on their own ports, standing for
  hosts) on one PostgreSQL database with Redis between them, one agent on the first
  replica, the load split over the replicas;
- simgate accepting only (`serve` with 1 and N workers, its device paused): the ceiling
  of the rows that also deliver;
- a bare ASGI echo under one uvicorn process (httptools, uvloop): the ceiling of the
  HTTP stack simgate serves on.

Per system: accepted/s (2xx answers only), p50 and p99 latency, errors (non-2xx answers
and socket errors), delivery (for simgate every accepted id must be Sent by the emulated
SIMs, for Kannel as many messages must reach fakesmsc as were accepted; a row whose
delivery falls short says FAILED) and CPU per message: the CPU time of the system's
processes from the start of the load to the end of delivery, over the messages accepted.
On a shared machine the rates follow the share of the cores each system got; the CPU per
message does much less. The load asks for no delivery reports on either side.

    python bench/peers.py [--seconds 8] [--connections 32] [--workers 2]
                          [--systems run,serve,serve-pg,replicas-1,replicas-2,replicas-4,
                                     accept-1,accept,kannel,echo]

Needs `apt-get install -y wrk kannel kannel-extras`, and PostgreSQL at
SIMGATE_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test) for serve-pg.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from accept import ECHO_STACKS, WRK_RESULTS, echo_server, run_wrk

from simgate.testing import SimgateProcess, free_port, start_agent

USER, PASSWORD = "bench", "bench-password"
PG_ADMIN_URL = os.environ.get("SIMGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SIMGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
KANNEL_FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
WARM_UP = 2
# how long delivery may stand still after the load before the count is final
SETTLE_SECONDS = 20.0

# The same load for every system: a numbered recipient per request, so each message is
# new; answers that carry an id (simgate's) are written to a file to be checked after.
WRK_SCRIPT = textwrap.dedent("""
    wrk.method = "{method}"
    {headers}
    local counter = {offset}
    request = function()
      counter = counter + 1
      local number = string.format("1916%07d", 2000000 + counter % 8000000)
      {request}
    end
""")

SIMGATE_REQUEST = """
      local body = '{"message": "peers bench", "phoneNumbers": ["+' .. number .. '"],'
        .. ' "withDeliveryReport": false}'
      return wrk.format(nil, nil, nil, body)"""

KANNEL_REQUEST = """
      return wrk.format(nil, "/cgi-bin/sendsms?username=bench&password=bench&from=1000&to="
        .. number .. "&text=peers+bench")"""

ECHO_REQUEST = """
      return wrk.format(nil, nil, nil, '{"to": "' .. number .. '"}')"""


@dataclass
class Row:
    system: str
    runs: list[dict] = field(default_factory=list)  # warm-up and measured wrk results
    accepted_total: int = 0
    reached: int | None = None  # None: nothing to deliver (the echo)
    drain_seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the system's own processes, wrk's left out
    note: str = ""

    @property
    def measured(self) -> dict:
        return self.runs[-1]

    @property
    def accepted_rate(self) -> float:
        run = self.measured
        return (run["requests"] - run["non_2xx"]) / run["seconds"]

    @property
    def failed(self) -> bool:
        return self.reached is not None and self.reached < self.accepted_total


def load(name: str, url: str, request: str, args: argparse.Namespace, workdir: Path,
         method: str = "POST", headers: str = "", offset: int = 0) -> tuple[list[dict], Path]:
    """Warm-up, then the measured run; returns both results and the file of answered ids."""
    ids_path = workdir / f"{name}.ids"
    script = workdir / f"{name}.lua"
    runs = []
    for offset_of_run, seconds in ((offset, WARM_UP), (offset + 5_000_000, args.seconds)):
        script.write_text(WRK_SCRIPT.format(method=method, headers=headers,
                                            offset=offset_of_run, request=request)
                          + WRK_RESULTS)
        result = run_wrk(url, seconds, args.connections, 1, script, ids=ids_path)
        result["seconds"] = result["requests"] / result["rate"] if result["rate"] else seconds
        runs.append(result)
    return runs, ids_path


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used so far by these processes and all their descendants (Linux /proc):
    the cost of a system's work, whatever share of the shared machine it got."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    members, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in members:
                members.add(pid)
                frontier.append(pid)
    return sum(times.get(pid, 0.0) for pid in members)


def accepted(runs: list[dict]) -> int:
    return sum(r["requests"] - r["non_2xx"] for r in runs)


def settle(count: Callable[[], int], target: int) -> tuple[int, float]:
    """Wait until `count()` reaches target, or stands still for SETTLE_SECONDS."""
    started = last_change = time.monotonic()
    last = -1
    while True:
        now_count = count()
        now = time.monotonic()
        if now_count >= target:
            return now_count, now - started
        if now_count != last:
            last, last_change = now_count, now
        elif now - last_change > SETTLE_SECONDS:
            return now_count, now - started
        time.sleep(0.2)


# -- simgate --------------------------------------------------------------------------

SIMGATE_ENV = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
               "SIMGATE_LOG_LEVEL": "warning"}


def auth_header() -> str:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return (f'wrk.headers["Content-Type"] = "application/json"\n'
            f'    wrk.headers["Authorization"] = "Basic {token}"')


class SentCounter:
    """Which of the answered ids the store holds as Sent (or later), read in the store."""

    def __init__(self, database_url: str | None, sqlite_path: Path | None) -> None:
        self.database_url = database_url
        self.sqlite_path = sqlite_path

    def __call__(self, ids: list[str]) -> int:
        query = ("SELECT ext_id FROM messages WHERE state IN ('Sent', 'Delivered')")
        if self.sqlite_path is not None:
            with sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True) as connection:
                found = {r[0] for r in connection.execute(query)}
        else:
            found = asyncio.run(self._pg(query))
        return sum(1 for i in ids if i in found)

    async def _pg(self, query: str) -> set[str]:
        connection = await asyncpg.connect(self.database_url)
        try:
            return {r[0] for r in await connection.fetch(query)}
        finally:
            await connection.close()


def wait_for_sims(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # the first check of the password is slow on purpose (Argon2): seconds when loaded
        devices = httpx.get(f"{url}/3rdparty/v1/devices", auth=(USER, PASSWORD),
                            timeout=60).json()
        if devices and any(d.get("simCards") for d in devices):
            time.sleep(1.0)  # the agent's event stream connects right after registering
            return
        time.sleep(0.1)
    raise SystemExit("the agent did not register within 60 s")


def measure_simgate(name: str, server: SimgateProcess, counter: SentCounter,
                    args: argparse.Namespace, workdir: Path, pids: list[int]) -> Row:
    wait_for_sims(server.url)
    cpu = tree_cpu(pids)
    runs, ids_path = load(name, f"{server.url}/3rdparty/v1/messages", SIMGATE_REQUEST, args,
                          workdir, headers=auth_header())
    row = Row(name, runs, accepted(runs))
    ids = ids_path.read_text().split() if ids_path.exists() else []
    if len(ids) != row.accepted_total:
        row.note = f"{len(ids)} ids answered for {row.accepted_total} accepted; "
    row.reached, row.drain_seconds = settle(lambda: counter(ids), len(ids))
    row.cpu_seconds = tree_cpu(pids) - cpu
    return row


def simgate_run(args: argparse.Namespace, workdir: Path) -> Row:
    data = workdir / "run"
    server = SimgateProcess(["run", "--sim-selection", "RoundRobin"], data,
                            env=SIMGATE_ENV).start()
    try:
        return measure_simgate("simgate run", server, SentCounter(None, data / "simgate.db"),
                               args, workdir, [server.process.pid])
    finally:
        server.stop()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database, dropped afterwards."""
    name = f"simgate_peers_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def simgate_split(args: argparse.Namespace, workdir: Path, postgres: bool) -> Row:
    name = f"simgate serve --workers {args.workers} + agent" + (" (PostgreSQL)" if postgres
                                                                 else "")
    data = workdir / ("serve-pg" if postgres else "serve")
    with (postgres_database() if postgres else _nothing()) as pg_url:
        env = {**SIMGATE_ENV, "SIMGATE_WORKERS": str(args.workers)}
        if pg_url:
            env["SIMGATE_DATABASE_URL"] = pg_url.replace("postgresql://",
                                                         "postgresql+asyncpg://")
        server = SimgateProcess(["serve"], data / "server", env=env).start()
        agent = start_agent(server, data / "agent", USER, PASSWORD,
                            "--sim-selection", "RoundRobin")
        try:
            counter = SentCounter(pg_url, None if pg_url else data / "server" / "simgate.db")
            return measure_simgate(name, server, counter, args, workdir,
                                   [server.process.pid, agent.pid])
        finally:
            stop(agent)
            server.stop()


def simgate_replicas(args: argparse.Namespace, workdir: Path, count: int) -> Row:
    """`count` replicas of `serve` (one process each, ports standing for hosts) on one
    fresh PostgreSQL database with Redis between them, one agent on the first; the load
    is split over the replicas (a wrk a replica, its share of the connections), as a
    balancer would. The row's rate is their sum; p50 and p99 the worst replica's."""
    name = f"simgate serve x{count} replicas + agent (PostgreSQL, Redis)"
    with postgres_database() as pg_url:
        env = {**SIMGATE_ENV, "SIMGATE_BUS_URL": REDIS_URL,
               "SIMGATE_DATABASE_URL": pg_url.replace("postgresql://", "postgresql+asyncpg://")}
        servers = [SimgateProcess(["serve"], workdir / f"replica-{i}", env=env).start()
                   for i in range(count)]  # one after the other: the first migrates
        agent = start_agent(servers[0], workdir / "agent", USER, PASSWORD,
                            "--sim-selection", "RoundRobin")
        pids = [s.process.pid for s in servers] + [agent.pid]
        try:
            wait_for_sims(servers[0].url)
            cpu = tree_cpu(pids)
            share = argparse.Namespace(**{**vars(args),
                                          "connections": max(1, args.connections // count)})
            with ThreadPoolExecutor(count) as pool:
                parts = list(pool.map(lambda i: load(
                    f"replica-{i}", f"{servers[i].url}/3rdparty/v1/messages", SIMGATE_REQUEST,
                    share, workdir, headers=auth_header(), offset=i * 100_000_000),
                    range(count)))
            runs = [_summed([runs[k] for runs, _ in parts]) for k in range(2)]
            row = Row(name, runs, accepted(runs))
            ids = [i for _, path in parts if path.exists() for i in path.read_text().split()]
            counter = SentCounter(pg_url, None)
            row.reached, row.drain_seconds = settle(lambda: counter(ids), len(ids))
            row.cpu_seconds = tree_cpu(pids) - cpu
            return row
        finally:
            stop(agent)
            for server in servers:
                server.stop()


def _summed(runs: list[dict]) -> dict:
    """wrk runs side by side as one: counts and rates added, latencies the worst."""
    total = {key: sum(r[key] for r in runs) for key in ("requests", "non_2xx", "rate",
                                                        "socket_errors")}
    total["seconds"] = max(r["seconds"] for r in runs)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        total[key] = max(r[key] for r in runs)
    return total


def simgate_accepting(args: argparse.Namespace, workdir: Path, workers: int) -> Row:
    """Accepting alone: `serve` with its agent paused once registered (SIGSTOP), so no
    delivery competes for the cores; messages stay Pending (no queue limit). The ceiling
    of each delivering row above it."""
    env = {**SIMGATE_ENV, "SIMGATE_WORKERS": str(workers), "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}
    server = SimgateProcess(["serve"], workdir / "server", env=env).start()
    agent = start_agent(server, workdir / "agent", USER, PASSWORD)
    try:
        wait_for_sims(server.url)
        agent.send_signal(signal.SIGSTOP)
        cpu = tree_cpu([server.process.pid])
        runs, _ = load("accepting", f"{server.url}/3rdparty/v1/messages", SIMGATE_REQUEST,
                       args, workdir, headers=auth_header())
        row = Row(f"simgate serve --workers {workers}, accepting only (its device paused)",
                  runs, accepted(runs))
        row.cpu_seconds = tree_cpu([server.process.pid]) - cpu
        return row
    finally:
        agent.send_signal(signal.SIGCONT)
        stop(agent)
        server.stop()


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- Kannel ---------------------------------------------------------------------------

KANNEL_CONF = """\
group = core
admin-port = {admin}
admin-password = bench
smsbox-port = {smsbox}
box-allow-ip = "127.0.0.1"
store-type = file
store-location = "{dir}/kannel.store"
log-file = "{dir}/bearerbox.log"
log-level = 2

group = smsc
smsc = fake
smsc-id = fake
port = {fake}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
log-file = "{dir}/smsbox.log"
log-level = 2

group = sendsms-user
username = bench
password = bench

group = sms-service
keyword = default
text = "no service here"
"""


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def kannel(args: argparse.Namespace, workdir: Path) -> Row:
    for program in ("bearerbox", "smsbox"):
        if not shutil.which(program):
            raise SystemExit("Kannel is needed: apt-get install -y kannel kannel-extras")
    if not KANNEL_FAKESMSC.exists():
        raise SystemExit("fakesmsc is needed: apt-get install -y kannel-extras")
    kdir = workdir / "kannel"
    kdir.mkdir()
    ports = {"admin": free_port(), "smsbox": free_port(), "fake": free_port(),
             "sendsms": free_port()}
    conf = kdir / "kannel.conf"
    conf.write_text(KANNEL_CONF.format(dir=kdir, **ports))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    bearerbox = subprocess.Popen(["bearerbox", str(conf)], **quiet)
    processes = [bearerbox]
    fake_log = kdir / "fakesmsc.log"
    try:
        wait_port(ports["admin"])
        # -m 0: it sends nothing itself and prints each message the SMSC hands it
        processes.append(subprocess.Popen(
            [str(KANNEL_FAKESMSC), "-H", "127.0.0.1", "-r", str(ports["fake"]), "-m", "0",
             "1000 2000 text unused"], stdout=subprocess.DEVNULL,
            stderr=fake_log.open("wb")))
        processes.append(subprocess.Popen(["smsbox", str(conf)], **quiet))
        wait_port(ports["sendsms"])

        def reached() -> int:
            with fake_log.open("rb") as log:
                return sum(1 for line in log if b"Got message" in line)

        url = f"http://127.0.0.1:{ports['sendsms']}/cgi-bin/sendsms"
        pids = [p.pid for p in processes]
        cpu = tree_cpu(pids)
        runs, _ = load("kannel", url, KANNEL_REQUEST, args, workdir, method="GET")
        row = Row("Kannel (bearerbox + smsbox, store-type = file, fake SMSC)", runs,
                  accepted(runs))
        row.reached, row.drain_seconds = settle(reached, row.accepted_total)
        row.cpu_seconds = tree_cpu(pids) - cpu
        return row
    finally:
        for process in reversed(processes):
            stop(process, signal.SIGTERM)


# -- the ceiling ----------------------------------------------------------------------

def echo(args: argparse.Namespace, workdir: Path) -> Row:
    port = free_port()
    stack = ECHO_STACKS["echo (httptools, uvloop)"]
    server = echo_server(port, 1, stack)
    try:
        cpu = tree_cpu([server.pid])
        runs, _ = load("echo", f"http://127.0.0.1:{port}/", ECHO_REQUEST, args, workdir,
                       headers='wrk.headers["Content-Type"] = "application/json"')
        row = Row("bare ASGI echo, one uvicorn process (the ceiling)", runs, accepted(runs))
        row.cpu_seconds = tree_cpu([server.pid]) - cpu
        return row
    finally:
        server.terminate()
        server.wait()


SYSTEMS: dict[str, Callable[[argparse.Namespace, Path], Row]] = {
    "run": simgate_run,
    "serve": lambda args, workdir: simgate_split(args, workdir, postgres=False),
    "serve-pg": lambda args, workdir: simgate_split(args, workdir, postgres=True),
    "accept-1": lambda args, workdir: simgate_accepting(args, workdir, 1),
    "accept": lambda args, workdir: simgate_accepting(args, workdir, args.workers),
    "replicas-1": lambda args, workdir: simgate_replicas(args, workdir, 1),
    "replicas-2": lambda args, workdir: simgate_replicas(args, workdir, 2),
    "replicas-4": lambda args, workdir: simgate_replicas(args, workdir, 4),
    "kannel": kannel,
    "echo": echo,
}


def report(rows: list[Row], args: argparse.Namespace) -> None:
    kannel_row = next((r for r in rows if r.system.startswith("Kannel")), None)
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s after a {WARM_UP} s warm-up,"
          f" a different recipient per request; {os.cpu_count()} CPUs\n")
    print("| system | accepted/s | p50 | p99 | errors | reached SIMs/SMSC | CPU/msg"
          " | vs Kannel |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        run = row.measured
        errors = run["non_2xx"] + run.get("socket_errors", 0)
        if row.reached is None:
            delivery = "-"
        else:
            delivery = (f"{row.reached:,} of {row.accepted_total:,}"
                        f" ({row.drain_seconds:.1f} s after the load)")
            if row.failed:
                delivery += " FAILED"
        cpu_ms = 1000 * row.cpu_seconds / max(row.accepted_total, 1)
        ratio = ""
        if kannel_row and row is not kannel_row and kannel_row.accepted_rate:
            ratio = (f"{row.accepted_rate / kannel_row.accepted_rate:.2f}x,"
                     f" p99 {run['p99_ms'] / kannel_row.measured['p99_ms']:.1f}x")
        print(f"| {row.system} | {row.accepted_rate:,.0f} | {run['p50_ms']:.1f} ms"
              f" | {run['p99_ms']:.1f} ms | {errors} | {delivery}"
              f" | {cpu_ms:.2f} ms | {ratio} |")
        if row.note:
            print(f"  note: {row.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)}")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}: choose among {', '.join(SYSTEMS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="simgate-peers-") as tmp:
        for name in names:
            workdir = Path(tmp) / name
            workdir.mkdir()
            row = SYSTEMS[name](args, workdir)
            rows.append(row)
            print(f"{row.system}: {row.accepted_rate:,.0f} accepted/s", file=sys.stderr,
                  flush=True)
    report(rows, args)
    if any(r.failed for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
