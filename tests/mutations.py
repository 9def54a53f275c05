"""The mutation check: does the suite fail on the bugs that matter most?

Each mutation below is a deliberate bug, written as a pattern to find in one file of the
product and what to put in its place. One at a time, on a scratch copy of the checkout
(this one is never touched), the script applies it and runs only the tests named to
catch it. A mutation is caught when those tests fail; missed when they pass.

    python tests/mutations.py                     # all, on SQLite
    python tests/mutations.py --db postgresql     # the same on PostgreSQL
    python tests/mutations.py --only inbox        # those whose name holds "inbox"
    python tests/mutations.py --list

It first runs the named tests on the unchanged copy (they must pass: a test that fails
anyway proves nothing), then each mutation. It exits 0 only when every mutation was
caught. A pattern that no longer matches (the code moved on) is reported as such, with
the file and pattern, so the mutation can be written again for the new code.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/simgate"


@dataclass(frozen=True)
class Edit:
    path: str  # under src/simgate
    pattern: str  # a regular expression that must match exactly `count` times
    replacement: str
    count: int = 1


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str  # what a user or an attacker would meet
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids that must fail


# a delivery a receiver checks with hmac itself, not with simgate's verify()
SIGNED_DELIVERY = ("tests/integration/test_webhooks.py::"
                   "test_received_sms_is_signed_and_carries_sim_number")

MUTATIONS = (
    Mutation(
        "interrupted-send-repeated",
        "a send a crash cut off (journal: recipient `sending`) is sent again at restart",
        (Edit("agent/agent.py", r'if previous == "sending":', 'if False:  # mutated'),
         Edit("agent/agent.py", r"if previous is not None:\n",
              'if previous not in (None, "sending"):  # mutated\n')),
        ("tests/e2e/test_interrupted_send.py",),
    ),
    Mutation(
        "interrupted-send-ignored",
        "the `sending` branch disabled: the cut-off recipient is never reported",
        (Edit("agent/agent.py", r'if previous == "sending":', 'if False:  # mutated'),),
        ("tests/e2e/test_interrupted_send.py",),
    ),
    Mutation(
        "inbox-forgets-the-user",
        "the inbox list, filters and totals show every user's received SMS",
        (Edit("services/inbox.py", r"conditions = \[IncomingMessage\.user_id == user_id\]\n",
              "conditions = []  # mutated\n"),),
        ("tests/integration/test_inbox_isolation.py",),
    ),
    Mutation(
        "inbox-export-forgets-the-user",
        "an export or refresh raises webhooks for other users' received SMS",
        (Edit("services/inbox.py", r"conditions = \[IncomingMessage\.user_id == user_id,\n",
              "conditions = [  # mutated\n"),),
        ("tests/integration/test_inbox_isolation.py",),
    ),
    Mutation(
        "signature-over-timestamp-then-body",
        "sign() and verify() both HMAC timestamp + body: receivers of the official "
        "format refuse every delivery",
        (Edit("webhooks/signing.py", r"body \+ stamp\.encode\(\)", "stamp.encode() + body"),
         Edit("webhooks/signing.py", r"body \+ timestamp\.encode\(\)",
              "timestamp.encode() + body")),
        ("tests/unit/test_webhook_signature.py", SIGNED_DELIVERY),
    ),
    Mutation(
        "signature-sha1",
        "sign() and verify() both use HMAC-SHA1",
        (Edit("webhooks/signing.py", r"hashlib\.sha256", "hashlib.sha1", count=2),),
        ("tests/unit/test_webhook_signature.py", SIGNED_DELIVERY),
    ),
    Mutation(
        "random-is-round-robin",
        "Random SIM selection alternates strictly, as RoundRobin does",
        (Edit("domain/routing.py",
              r"    if mode is SimSelectionMode\.RANDOM:\n"
              r"        return Choice\(\(rng or random\)\.choice\(ready\), cursor\)\n",
              "    if mode is SimSelectionMode.RANDOM:  # mutated\n"
              "        chosen = next((i for i in ready if i >= cursor), ready[0])\n"
              "        return Choice(chosen, chosen + 1)\n"),),
        ("tests/unit/test_routing_properties.py",
         "tests/e2e/test_run.py::test_selection_modes_change_with_settings"),
    ),
    Mutation(
        "rotation-stuck-in-the-rule",
        "RoundRobin never moves on: every message goes through the same SIM",
        (Edit("domain/routing.py",
              r"(def choose_sim\((?:.|\n)*?)return Choice\(chosen, chosen \+ 1\)",
              r"\1return Choice(chosen, cursor)  # mutated"),),
        ("tests/unit/test_domain.py", "tests/unit/test_routing_properties.py",
         "tests/e2e/test_run.py::test_selection_modes_change_with_settings"),
    ),
    Mutation(
        "rotation-stuck-in-the-agent",
        "the agent forgets the RoundRobin cursor after each choice",
        (Edit("agent/routing.py", r"self\.cursor = choice\.cursor", "pass  # mutated"),),
        ("tests/e2e/test_run.py::test_selection_modes_change_with_settings",),
    ),
    Mutation(
        "sim-number-ignored-by-the-agent",
        "a message asked through SIM 2 goes out through the routing's choice",
        (Edit("agent/routing.py", r"if message\.sim_number is not None:",
              "if False:  # mutated"),),
        ("tests/e2e/test_run.py::test_explicit_sim_numbers_use_the_right_sim",),
    ),
    Mutation(
        "phones-get-no-sim",
        "the server routes no SIM for a phone: every message leaves the choice to the app",
        (Edit("services/router.py", r"return Decision\(sim_number=choice\.slot_index \+ 1\)",
              "return Decision()  # mutated"),),
        ("tests/e2e/test_phone_routing.py::"
         "test_round_robin_with_a_daily_limit_hands_each_message_its_sim",),
    ),
    Mutation(
        "phones-never-fail-over",
        "a phone's send failed for no service stays Failed: no next SIM",
        (Edit("services/router.py", r"return attempt, device_id, paused",
              "return attempt, None, paused  # mutated"),),
        ("tests/e2e/test_phone_routing.py::"
         "test_a_sim_without_service_fails_over_to_the_next_and_pauses_after_three",),
    ),
    Mutation(
        "sim-number-dropped-from-sms-received",
        "the sms:received webhook no longer says which SIM received the SMS",
        (Edit("services/inbox.py", r'        "simNumber": message\.sim_number,\n', ""),),
        ("tests/integration/test_webhooks.py::"
         "test_received_sms_is_signed_and_carries_sim_number",),
    ),
    Mutation(
        "sim-number-not-sent-by-the-agent",
        "the agent forwards a received SMS without the SIM that received it",
        (Edit("agent/agent.py", r'item\["simNumber"\] = sms\.slot \+ 1',
              "pass  # mutated"),),
        ("tests/e2e/test_run.py::test_multipart_and_unicode_arrive_intact_with_signed_webhooks",),
    ),
)


class PatternGone(Exception):
    """The code a mutation was written for has changed."""


def mutate(source: str, edits: tuple[Edit, ...], path: str) -> str:
    for edit in edits:
        found = len(re.findall(edit.pattern, source))
        if found != edit.count:
            raise PatternGone(f"{PACKAGE}/{path}: pattern {edit.pattern!r} found {found} "
                              f"time(s), expected {edit.count}: write this mutation again "
                              "for the code as it is now")
        source = re.sub(edit.pattern, edit.replacement, source, count=edit.count)
    return source


def scratch_copy(into: Path) -> Path:
    """The checkout's files (tracked and new, as they are now, ignored ones left out)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def run_tests(copy: Path, tests: tuple[str, ...], db: str, workers: str,
              timeout: float) -> tuple[int, float, str]:
    """pytest on the copy (its own src first on the path): exit code, seconds, output."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-n", workers, "--db", db, *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started, "timed out"
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--only", help="run the mutations whose name holds this")
    parser.add_argument("--workers", default="0", help="pytest-xdist workers (-n)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a run may take")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--show", action="store_true",
                        help="print each mutation's change to the code as it is, run nothing")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or args.only in m.name]
    if args.show:
        return show(chosen)
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name}: {m.bug}\n    caught by: {' '.join(m.tests)}")
        return 0 if args.list else 2

    with tempfile.TemporaryDirectory(prefix="simgate-mutations-") as scratch:
        copy = scratch_copy(Path(scratch))
        needed = tuple(dict.fromkeys(t for m in chosen for t in on_store(m, args.db)))
        code, seconds, output = run_tests(copy, needed, args.db, args.workers, args.timeout)
        if code != 0:
            print(f"the named tests fail on the unchanged code ({seconds:.0f} s): "
                  f"fix them first\n{output[-3000:]}")
            return 2
        print(f"baseline: the named tests pass unchanged ({seconds:.0f} s, --db {args.db})")
        missed = 0
        for mutation in chosen:
            tests = on_store(mutation, args.db)
            if not tests:
                print(f"n/a     {mutation.name}: its tests use no store (the SQLite leg runs "
                      "them)")
                continue
            originals = {path: (copy / PACKAGE / path).read_text()
                         for path in dict.fromkeys(e.path for e in mutation.edits)}
            try:
                mutated = {path: mutate(text, tuple(e for e in mutation.edits
                                                    if e.path == path), path)
                           for path, text in originals.items()}
            except PatternGone as gone:
                print(f"PATTERN GONE {mutation.name}: {gone}")
                missed += 1
                continue
            try:
                for path, text in mutated.items():
                    (copy / PACKAGE / path).write_text(text)
                code, seconds, output = run_tests(copy, tests, args.db, args.workers,
                                                  args.timeout)
            finally:
                for path, text in originals.items():
                    (copy / PACKAGE / path).write_text(text)
            if code == 1:
                print(f"caught  {mutation.name} ({seconds:.0f} s): {_first_failure(output)}")
                continue
            missed += 1
            if code == 0:
                print(f"MISSED  {mutation.name}: {mutation.bug}; "
                      f"{' '.join(tests)} passed")
            else:
                print(f"ERROR   {mutation.name}: pytest "
                      f"{'timed out' if code == -1 else f'exited {code}'}\n{output[-1500:]}")
        tried = [m for m in chosen if on_store(m, args.db)]
        print(f"{len(tried) - missed} of {len(tried)} mutations caught (--db {args.db})")
        return 0 if missed == 0 else 1


def on_store(mutation: Mutation, db: str) -> tuple[str, ...]:
    """The mutation's tests that run on `db`: the PostgreSQL leg runs only the integration
    and e2e ones (tests/conftest.py deselects the rest there)."""
    if db == "sqlite":
        return mutation.tests
    return tuple(t for t in mutation.tests if t.startswith(("tests/integration/",
                                                            "tests/e2e/")))


def show(chosen: list[Mutation]) -> int:
    """Each mutation's diff against this checkout: to check or adapt the patterns."""
    gone = 0
    for mutation in chosen:
        for path in dict.fromkeys(e.path for e in mutation.edits):
            text = (ROOT / PACKAGE / path).read_text()
            try:
                after = mutate(text, tuple(e for e in mutation.edits if e.path == path), path)
            except PatternGone as error:
                print(f"PATTERN GONE {mutation.name}: {error}")
                gone += 1
                continue
            diff = difflib.unified_diff(text.splitlines(), after.splitlines(), lineterm="",
                                        fromfile=f"{PACKAGE}/{path}", tofile=mutation.name,
                                        n=0)
            print("\n".join(diff))
    return 1 if gone else 0


def _first_failure(output: str) -> str:
    """The FAILED line pytest's summary gives first, shortened."""
    line = next((ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))), "")
    return line[:160] or "failed"


if __name__ == "__main__":
    sys.exit(main())
