"""Shared fixtures: a gateway on SQLite (or the real PostgreSQL) and an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import secrets
import shutil
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from simgate.config import Settings
from simgate.server.app import create_app
from simgate.services.gateway import Gateway
from simgate.store.db import migrate
from simgate.testing import (
    TEST_ENV,
    create_pg_database,
    drop_pg_database,
    empty_pg_database,
    pg_reachable,
)

# No test reaches the internet: servers in this process and every child (a `simgate`
# spawned any way) have the push relay off and pointed at a closed local port, unless a
# test turns it on against its own local stand-in of the upstream.
os.environ.update(TEST_ENV)

USER, PASSWORD = "alice", "alice-secret"
PG_ADMIN_URL = os.environ.get("SIMGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# Suites whose gateway (in-process or spawned) runs on the store chosen with --db.
ON_CHOSEN_STORE = ("integration", "e2e")
LOG_TAIL_LINES = 60  # of each log a failed test shows


# Modules of those suites that open no gateway (drivers, the bus, field tools), or that
# run on both stores already (test_store): the PostgreSQL leg leaves them to the default.
STORE_FREE = {"test_at_driver.py", "test_bus.py", "test_emulated_modem.py",
              "test_emulated_at_dialect.py", "test_termux.py", "test_field_tools.py",
              "test_emulator_cli.py", "test_store.py", "test_acknowledged_events.py",
              "test_doctor_modem.py",
              # replicas always share a PostgreSQL database of their own
              "test_replicas.py"}
# Modules about the SQLite store itself (its file's mode, a store not yet made): they run
# in the default leg only. test_deploy.py checks files against a server's /metrics, the
# same on either store; test_dashboard_browser.py drives the dashboard, not the store.
SQLITE_ONLY = {"test_private_files.py", "test_parity_cli.py", "test_dashboard_browser.py",
               "test_deploy.py"}


@pytest.hookimpl(hookwrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item, settings):
    """At a timeout, print the asyncio tasks still waiting before the threads' stacks: a
    test hung in an event loop shows only `select` in those."""
    yield
    timed_out = signal.getsignal(signal.SIGALRM)
    if not callable(timed_out):
        return

    def handler(signum, frame):
        loop = asyncio._get_running_loop()
        if loop is not None:
            terminal = item.config.get_terminal_writer()
            terminal.sep("+", title="what the event loop awaits at the timeout")
            waiting = [t.get_coro() for t in asyncio.all_tasks(loop)] + [
                g for g in gc.get_objects()  # async fixtures: driven by no task of theirs
                if inspect.isasyncgen(g) and g.ag_frame and "/tests/" in g.ag_frame.f_code.co_filename]
            for coroutine in waiting:
                terminal.write("".join(_await_chain(coroutine)) + "\n")
        timed_out(signum, frame)

    signal.signal(signal.SIGALRM, handler)


def _await_chain(coroutine: object) -> list[str]:
    """Where a suspended coroutine (or async generator) waits, down its awaits."""
    lines = []
    while coroutine is not None:
        frame = next((f for a in ("cr_frame", "ag_frame", "gi_frame")
                      if (f := getattr(coroutine, a, None)) is not None), None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in "
                         f"{frame.f_code.co_name}\n")
        coroutine = next((c for a in ("cr_await", "ag_await", "gi_yieldfrom")
                          if (c := getattr(coroutine, a, None)) is not None), None)
    return lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the end of the logs its spawned servers and agents wrote in
    its tmp_path: on a loaded CI machine they are all there is to go on."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if not report.failed or tmp_path is None:
        return
    for log in sorted(tmp_path.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        report.sections.append((f"end of {log.relative_to(tmp_path)}", "\n".join(lines)))


def pytest_addoption(parser):
    parser.addoption(
        "--db", choices=("sqlite", "postgresql"), default="sqlite",
        help="store of the integration and e2e tests: sqlite (a file per test, the "
             "default, with every test) or postgresql (the run's own database on "
             "SIMGATE_TEST_PG; only the tests that use a store)")


LEFT_OUT = pytest.StashKey[int]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Each pytest-xdist worker collected the same tests: the controller keeps its count."""
    left = getattr(node, "workeroutput", {}).get("left_out", 0)
    node.config.stash[LEFT_OUT] = max(node.config.stash.get(LEFT_OUT, 0), left)


def pytest_terminal_summary(terminalreporter, config):
    """The PostgreSQL leg says what it leaves to the default leg, and why."""
    left = config.stash.get(LEFT_OUT, 0)
    if left:
        terminalreporter.write_line(
            f"--db postgresql: {left} tests left out, as they ran in the default leg: the "
            "unit tests, the modules that use no store or only SQLite, and the SQLite "
            "case of the tests that take both stores")


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL leg runs what a store is under; the rest ran in the default leg."""
    if config.getoption("--db") != "postgresql":
        return
    keep, leave = [], []
    for item in items:
        on_store = (item.path.parent.name in ON_CHOSEN_STORE
                    and item.path.name not in STORE_FREE | SQLITE_ONLY
                    and _store_param(item) != "sqlite")
        (keep if on_store else leave).append(item)
    if leave:
        config.hook.pytest_deselected(items=leave)
        config.stash[LEFT_OUT] = len(leave)
        if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
            config.workeroutput["left_out"] = len(leave)
        items[:] = keep


def _store_param(item: pytest.Item) -> str | None:
    """The store a `store_url` test runs on: its SQLite case ran in the default leg."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("store_url") if callspec else None


@pytest.fixture(scope="session")
def pg_template(request) -> Iterator[str | None]:
    """With --db postgresql: a migrated database of this run that nothing connects to,
    so that copies of it (CREATE DATABASE ... TEMPLATE) are made in a moment."""
    if request.config.getoption("--db") != "postgresql":
        yield None
        return
    if not pg_reachable(PG_ADMIN_URL):
        pytest.exit(f"--db postgresql: no PostgreSQL answers at {PG_ADMIN_URL} "
                    "(set SIMGATE_TEST_PG to its admin URL)", returncode=3)
    url = create_pg_database(PG_ADMIN_URL)
    try:
        asyncio.run(migrate(Settings(database_url=url).resolved_database_url))
        yield url
    finally:
        drop_pg_database(PG_ADMIN_URL, url)


def _copy_of(template_url: str) -> str:
    return create_pg_database(PG_ADMIN_URL, template=template_url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def pg_run_database(pg_template) -> Iterator[str | None]:
    """With --db postgresql: the database each test's own servers use, emptied before
    each test."""
    if pg_template is None:
        yield None
        return
    url = _copy_of(pg_template)
    try:
        yield url
    finally:
        drop_pg_database(PG_ADMIN_URL, url)


@pytest.fixture(scope="module", autouse=True)
def module_store(request, pg_template, tmp_path_factory) -> Iterator[str | None]:
    """The store of the servers a module's tests share (module-scoped fixtures, which
    start before any test's `chosen_store`): on PostgreSQL, a database of the module's
    own, so the emptying before each test leaves their users and devices alone.

    Then the guard of the PostgreSQL leg: a server that opened SQLite (`simgate.db` in
    its data directory) anywhere in this worker's temporary tree fails the run."""
    if pg_template is None or request.path.parent.name not in ON_CHOSEN_STORE:
        yield None
        return
    url = _copy_of(pg_template)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SIMGATE_DATABASE_URL", url)
            yield url
    finally:
        drop_pg_database(PG_ADMIN_URL, url)
    opened = sorted(set(tmp_path_factory.getbasetemp().rglob(SQLITE_STORE)) - _REPORTED)
    _REPORTED.update(opened)
    if opened:
        pytest.fail("--db postgresql, yet a server opened SQLite: "
                    + ", ".join(str(path) for path in opened)
                    + " (start it after chosen_store, or in a module-scoped fixture: "
                      "module_store sets SIMGATE_DATABASE_URL for those)", pytrace=False)


SQLITE_STORE = "simgate.db"  # the file of a server's store on SQLite (Settings)
_REPORTED: set[Path] = set()


@pytest.fixture(autouse=True)
def chosen_store(request, pg_run_database, module_store, monkeypatch) -> Iterator[str | None]:
    """Point every gateway an integration or e2e test starts itself at the chosen store:
    the environment reaches in-process Settings and spawned `simgate` processes alike. On
    PostgreSQL each test starts on the run's database emptied (as a new one would be,
    in a tenth of the time a copy takes)."""
    monkeypatch.delenv("SIMGATE_DATABASE_URL", raising=False)
    if pg_run_database is None or request.node.path.parent.name not in ON_CHOSEN_STORE:
        if request.node.path.parent.name == "integration" and (
                request.node.path.name not in STORE_FREE):
            _seed_sqlite(request)
        yield None
        return
    empty_pg_database(pg_run_database)
    monkeypatch.setenv("SIMGATE_DATABASE_URL", pg_run_database)
    yield pg_run_database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite store migrated once per worker process, whole in its main file."""
    path = tmp_path_factory.mktemp("store-template") / "migrated.sqlite"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _seed_sqlite(request: pytest.FixtureRequest) -> None:
    """An integration test's SQLite store (`simgate.db` in its tmp_path, where its gateway
    opens it) starts as a copy of the migrated template: the migration at open finds it
    at the newest revision, in a moment instead of a second or two a test."""
    if "store_url" in request.fixturenames:
        return  # the store tests make their stores themselves
    store = request.getfixturevalue("tmp_path") / SQLITE_STORE
    if not store.exists():
        shutil.copyfile(request.getfixturevalue("sqlite_template"), store)
        store.chmod(0o600)  # as the store makes its file


async def _pg_available() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _pg_database() -> str:
    """A fresh database on the real PostgreSQL server, dropped at exit."""
    import asyncpg

    name = f"simgate_test_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(PG_ADMIN_URL)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return name


async def _drop_pg_database(name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_URL)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request, tmp_path) -> AsyncIterator[str]:
    """Each store test runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'simgate.db'}"
        return
    if not await _pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    name = await _pg_database()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await _drop_pg_database(name)


@pytest.fixture
async def gateway(tmp_path) -> AsyncIterator[Gateway]:
    settings = Settings(data_dir=tmp_path, username=USER, password=PASSWORD)
    gw = await Gateway.open(settings)
    yield gw
    await gw.close()


@pytest.fixture
async def api(gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the ASGI app, authenticated as the default user."""
    app = create_app(gateway.settings, gateway)
    app.state.gateway = gateway
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://simgate",
                                 auth=(USER, PASSWORD)) as client:
        yield client


async def register_device(api: httpx.AsyncClient, sims: list[dict] | None = None,
                          name: str = "phone", auth: tuple[str, str] | None = None) -> dict:
    """Register a device over /mobile/v1 like an agent (as the client's user, or `auth`);
    returns id and token."""
    if sims is None:
        sims = [{"slotIndex": 0, "phoneNumber": "+12025550101", "carrierName": "simgate Mobile"},
                {"slotIndex": 1, "phoneNumber": "+12025550102", "carrierName": "simgate Mobile"}]
    response = await api.post("/mobile/v1/device", json={"name": name, "simCards": sims},
                              **({"auth": auth} if auth else {}))
    assert response.status_code == 201, response.text
    return response.json()


ON_CI = os.environ.get("CI") == "true"


def required_tool(command: str, package: str) -> str:
    """The path of `command` (a name on PATH, or an absolute path), which Debian's `package`
    provides. `.ci/run` installs it before the tests; the tests install nothing. Missing
    under CI=true, the test fails (CI must not stay green without it); elsewhere it is
    skipped, saying what to install."""
    found = shutil.which(command) or (command if os.path.isabs(command)
                                      and os.access(command, os.X_OK) else None)
    if found:
        return found
    why = f"`{command}` is missing: apt-get install {package}"
    if ON_CI:
        pytest.fail(f"{why} (.ci/run installs it before the tests)", pytrace=False)
    pytest.skip(why)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll a predicate (plain or async) until it returns something truthy."""

    async def _wait():
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(interval)

    return _wait()
