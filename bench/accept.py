"""Accepted messages/s and latency of POST /3rdparty/v1/messages, against a ceiling.

Starts `simgate serve` on a fresh data directory (SQLite, or with --postgresql a database
made for the run on the PostgreSQL server and dropped after), registers a
dual-SIM device, drives concurrent POSTs with wrk (Debian package `wrk`), and in turns
the same against a bare ASGI echo endpoint under uvicorn with the same number of worker
processes, so the figure is a ratio; medians of the rounds, as a shared machine is noisy.
The echo runs on two stacks: httptools + uvloop, the one simgate serves on (the strict
ceiling), and h11 + asyncio, plain `uvicorn` without its extras (with one worker only:
with several, that stack here waits out a 40 ms delayed ACK on every answer).
Only 2xx answers count as accepted; a refusal or a connection, read or timeout error fails
the run. At the end the id of every accepted message must be in the store.

    python bench/accept.py [--seconds 10] [--connections 64] [--workers 2] [--rounds 3]
                           [--postgresql [ADMIN_URL]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from simgate.config import Settings
from simgate.store.models import Message
from simgate.testing import SimgateProcess, create_pg_database, drop_pg_database, free_port

USER, PASSWORD = "bench", "bench-password"
PG_ADMIN_URL = os.environ.get("SIMGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

ECHO_APP = textwrap.dedent("""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
""")

# Appended to each wrk script: the ids of 2xx answers to $BENCH_IDS, and one RESULT line.
WRK_RESULTS = textwrap.dedent("""
    -- the id of every 2xx answer goes to a file, to be found in the store afterwards
    local ids = nil
    response = function(status, headers, body)
      if status < 300 and os.getenv("BENCH_IDS") then
        local id = string.match(body, '"id":%s*"([^"]+)"')
        if id then
          if not ids then ids = io.open(os.getenv("BENCH_IDS"), "a") end
          ids:write(id, "\\n")
        end
      end
    end
    function done(summary, latency, requests)
      local p = {}
      for _, q in ipairs({50, 90, 99}) do p[#p + 1] = latency:percentile(q) / 1000 end
      local e = summary.errors
      io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d %d\\n", summary.requests,
        summary.duration, p[1], p[2], p[3], e.status,
        e.connect + e.read + e.write + e.timeout))
    end
""")

WRK_SCRIPT = textwrap.dedent("""
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Basic {auth}"
    -- a different recipient each time, so no cache of numbers flatters the figure
    request = function()
      local body = string.format(
        '{{"message": "bench message", "phoneNumbers": ["+1916225%04d"], "simNumber": 2}}',
        math.random(0, 9999))
      return wrk.format(nil, nil, nil, body)
    end
""")


def run_wrk(url: str, seconds: int, connections: int, threads: int, script: Path,
            ids: Path | None = None) -> dict:
    """One wrk run; with `ids`, the ids of the 2xx answers are appended to that file."""
    env = {**os.environ, **({"BENCH_IDS": str(ids)} if ids else {})}
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)(?: (\d+))?", out)
    if not match:
        raise SystemExit(f"could not read wrk output:\n{out}")
    requests, micros, p50, p90, p99, errors, socket_errors = match.groups()
    accepted = int(requests) - int(errors)  # 2xx only
    return {"requests": int(requests), "rate": accepted / (int(micros) / 1e6),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "non_2xx": int(errors), "socket_errors": int(socket_errors or 0)}


ECHO_STACKS = {
    "echo (httptools, uvloop)": ["--http", "httptools", "--loop", "uvloop"],
    "echo (h11, asyncio)": ["--http", "h11", "--loop", "asyncio"],
}


def echo_server(port: int, workers: int, stack: list[str]) -> subprocess.Popen:
    app_dir = Path(tempfile.mkdtemp())
    (app_dir / "echo_app.py").write_text(ECHO_APP)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "echo_app:app", "--port", str(port), *stack,
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"], cwd=app_dir,
    )
    for _ in range(100):
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=b"{}")
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("echo server did not start")


async def stored_ids(database_url: str) -> set[str]:
    """Ids of the messages in the store, read there (paging the API would take minutes)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return set((await connection.scalars(select(Message.ext_id))).all())
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--postgresql", nargs="?", const=PG_ADMIN_URL, default=None,
                        metavar="ADMIN_URL",
                        help="store on PostgreSQL, in a new database made on that server "
                             f"for this run and dropped after (default {PG_ADMIN_URL})")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, for simgate and the echo alike")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each, in turns; the median is reported")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    import base64

    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT.format(auth=auth) + WRK_RESULTS)
    # the bench device never takes its messages: its queue must not fill up
    env = {"SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD, "SIMGATE_LOG_LEVEL": "warning",
           "SIMGATE_WORKERS": str(args.workers), "SIMGATE_MAX_QUEUED_PER_DEVICE": "0"}
    database_url = create_pg_database(args.postgresql) if args.postgresql else None
    if database_url:
        env["SIMGATE_DATABASE_URL"] = database_url
    data_dir = Path(tempfile.mkdtemp())
    ids_path = data_dir / "accepted-ids"
    server = SimgateProcess(["serve"], data_dir, env=env).start()
    urls = {"simgate": f"{server.url}/3rdparty/v1/messages"}
    echoes = []
    runs: dict[str, list[dict]] = {"simgate": []}
    try:
        for name, stack in ECHO_STACKS.items():
            if "h11" in stack and args.workers > 1:
                continue
            port = free_port()
            echoes.append(echo_server(port, args.workers, stack))
            urls[name], runs[name] = f"http://127.0.0.1:{port}/", []
        device = httpx.post(f"{server.url}/mobile/v1/device", auth=(USER, PASSWORD), timeout=30,
                            json={"name": "bench",
                                  "simCards": [{"slotIndex": 0}, {"slotIndex": 1}]})
        if device.status_code != 201:
            raise SystemExit(f"registering the bench device failed: {device.text}")
        for _ in range(args.rounds):  # taken in turns, so all see the same machine
            for name, url in urls.items():
                runs[name].append(run_wrk(url, args.seconds, args.connections, args.threads,
                                          script, ids=ids_path if name == "simgate" else None))
        store = Settings(data_dir=data_dir, database_url=database_url)
        stored = asyncio.run(stored_ids(store.resolved_database_url))
    finally:
        server.stop()
        for echo in echoes:
            echo.terminate()
            echo.wait()
        if database_url:
            drop_pg_database(args.postgresql, database_url)

    print(json.dumps(runs, indent=2))
    simgate = median(runs["simgate"])
    accepted = ids_path.read_text().split() if ids_path.exists() else []
    failed = sum(r["non_2xx"] + r["socket_errors"] for r in runs["simgate"])
    print(f"accepted: {simgate['rate']:.0f} msg/s  p50 {simgate['p50_ms']:.1f} ms  "
          f"p99 {simgate['p99_ms']:.1f} ms  (median of {args.rounds}; connections "
          f"{args.connections}, workers {args.workers}, cpus {os.cpu_count()})")
    for name in [n for n in runs if n != "simgate"]:
        ceiling = median(runs[name])["rate"]
        print(f"{name}, {args.workers} worker(s): {ceiling:.0f} req/s"
              f" -> ratio {simgate['rate'] / ceiling:.1%}")
    lost = set(accepted) - stored
    print(f"accepted {len(accepted)} (2xx), all of them stored: {not lost}; "
          f"{len(stored)} in the store of a database new to this run")
    problems = []
    if failed:
        problems.append(f"{failed} requests had no 2xx answer (errors or refusals)")
    if len(set(accepted)) != len(accepted):
        problems.append(f"{len(accepted) - len(set(accepted))} ids answered twice")
    if lost:
        problems.append(f"LOST MESSAGES: {len(lost)} accepted ids not in the store")
    if problems:
        raise SystemExit("; ".join(problems))


def median(runs: list[dict]) -> dict:
    """The run with the median rate (its latencies with it)."""
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


if __name__ == "__main__":
    main()
