"""A bulk send as a user makes it: `simgate send --csv` of N rows against `simgate run`.

Prints how long the CLI took to have every row accepted, and how long until every
message was Sent (`--wait`), with the client's CPU time per row: what a user of
`simgate send --csv list.csv --wait` waits for on this machine.

    python bench/bulk_cli.py [--rows 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from simgate.testing import SimgateProcess

USER, PASSWORD = "bench", "bench-password"
SIM2 = "+12025550102"


def cli(*args: str) -> tuple[float, float, dict]:
    """Run `simgate ...`; wall and CPU seconds, and its JSON summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "simgate", *args], capture_output=True,
                          text=True, env={**os.environ, "SIMGATE_USERNAME": USER,
                                          "SIMGATE_PASSWORD": PASSWORD})
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"simgate {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        process = SimgateProcess(["run"], work / "run", env={
            "SIMGATE_USERNAME": USER, "SIMGATE_PASSWORD": PASSWORD,
            "SIMGATE_LOG_LEVEL": "warning"}).start()
        try:
            ready = time.monotonic() + 30
            while not httpx.get(f"{process.url}/3rdparty/v1/devices", auth=(USER, PASSWORD)
                                ).json():
                if time.monotonic() > ready:
                    sys.exit("the embedded agent did not register")
                time.sleep(0.1)
            rows = work / "list.csv"
            with rows.open("w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["phone", "text", "sim"])
                writer.writerows([SIM2, f"bench {i}", 1 + i % 2] for i in range(options.rows))
            common = ["send", "--csv", str(rows), "--server", process.url, "--json",
                      "--no-delivery-report", "--concurrency", str(options.concurrency)]
            accepted, cpu, summary = cli(*common)
            assert summary["accepted"] == options.rows, summary
            waited, _, summary = cli(*common, "--wait")
            assert summary["states"] == {"Sent": options.rows}, summary
        finally:
            process.stop()
    print(f"{options.rows} rows, {options.concurrency} in flight, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  all accepted after {accepted:.1f} s ({options.rows / accepted:.0f} rows/s);"
          f" CLI CPU {cpu / options.rows * 1000:.1f} ms a row (start-up included)")
    print(f"  all Sent {waited:.1f} s later (the resumed run only waited: it sent none)")


if __name__ == "__main__":
    main()
