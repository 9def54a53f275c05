"""The `simgate` command: run, serve, agent, users (admin); send, messages, inbox,
webhooks (users, in simgate.usercli)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from simgate import __version__
from simgate.client.config import CREDENTIALS_FILE, SERVER_FILE, local_gateway
from simgate.config import Settings, configure_logging, notices
from simgate.domain.routing import SimSelectionMode
from simgate.domain.sims import MAX_SIM_SLOTS
from simgate.files import UnsafeFile, write_private
from simgate.usercli import register as register_user_commands

if TYPE_CHECKING:  # the store, the agent and uvloop load with the commands that use them:
    # the user commands, which need none, start faster
    from simgate.agent.backends.base import SimBackend
    from simgate.domain.sims import SimSlot

# Plain help (click's): switches show as switches, not as "<bool>" values.
app = typer.Typer(help="simgate: an SMS gateway for phones and GSM modems with SIM cards.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
users_app = typer.Typer(help="Manage the users who may call the API.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(users_app, name="users")
tls_app = typer.Typer(help="HTTPS that Android phones accept.", no_args_is_help=True)
app.add_typer(tls_app, name="tls")
console = Console()
err = Console(stderr=True)
register_user_commands(app)
T = TypeVar("T")

HostOpt = Annotated[str | None, typer.Option(
    "--host", help="Listen address [SIMGATE_HOST; default: 127.0.0.1].")]
PortOpt = Annotated[int | None, typer.Option(
    "--port", help="Listen port [SIMGATE_PORT; default: 3000].")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where SQLite and state live [SIMGATE_DATA_DIR;"
    " default: ./simgate-data].")]
AccessLogOpt = Annotated[bool, typer.Option(
    "--access-log", help="Log one line per HTTP request [SIMGATE_ACCESS_LOG].")]
TlsCertOpt = Annotated[Path | None, typer.Option(
    "--tls-cert", help="Serve HTTPS with this certificate (PEM, with its chain)"
    " [SIMGATE_TLS_CERT]; `simgate tls init` makes one.")]
TlsKeyOpt = Annotated[Path | None, typer.Option(
    "--tls-key", help="The certificate's private key (PEM) [SIMGATE_TLS_KEY].")]


SmtpPortOpt = Annotated[int | None, typer.Option(
    "--smtp-port", help="Email to SMS: accept email on this SMTP port [SIMGATE_SMTP_PORT;"
    " default: off].")]


SmtpsPortOpt = Annotated[int | None, typer.Option(
    "--smtps-port", help="Email to SMS over TLS from the first byte, with the TLS"
    " certificate [SIMGATE_SMTPS_PORT; default: off].")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, unwrapped
    return typer.Exit(code)


def settings_from(host: str | None = None, port: int | None = None,
                  data_dir: Path | None = None, **extra: Any) -> Settings:
    overrides = {k: v for k, v in
                 {"host": host, "port": port, "data_dir": data_dir, **extra}.items()
                 if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        reasons = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise fail(f"invalid configuration: {reasons}") from None
    except ValueError as exc:
        raise fail(f"invalid configuration: {exc}") from None


def claim(settings: Settings) -> None:
    """Check the port, then take the data directory, before starting a server: a port
    in use leaves the directory as it was (no simgate.pid of a server that never ran)."""
    from simgate.serve.claim import InUse, check_port, lock_data_dir

    try:
        check_port(settings.host, settings.port)
        _held.append(lock_data_dir(settings.data_dir))
    except InUse as exc:
        raise fail(str(exc)) from None
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
    write_private(settings.data_dir / SERVER_FILE,
                  json.dumps({"url": f"{settings.scheme}://{host}:{settings.port}",
                              "pid": os.getpid()}))


def local_server(data_dir: Path | None, username: str | None = None) -> str:
    """The URL of the server last started on the data directory, else the default one;
    with a user given, the default (their credentials never go to a URL found there)."""
    settings = settings_from(data_dir=data_dir)
    local = None if username else local_gateway(settings.data_dir)[0]
    return local or f"http://127.0.0.1:{settings.port}"


_held: list[Any] = []  # the data directory lock, kept open while the process lives


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop (the loop uvicorn would pick itself), with friendly errors."""
    import uvloop
    from sqlalchemy.exc import SQLAlchemyError

    from simgate.agent.client import ServerError
    from simgate.services.errors import ServiceError

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ServiceError as exc:
        raise fail(exc.message) from None
    except (ServerError, UnsafeFile) as exc:
        raise fail(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:
        raise fail(str(exc).splitlines()[0]) from None


def _version(value: bool) -> None:
    if value:
        console.print(f"simgate {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    configure_logging()


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None,
          workers: Annotated[int | None, typer.Option(
              "--workers", help="Server processes sharing the port, up to one per core"
              " [SIMGATE_WORKERS; default: 1].")] = None,
          tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
          access_log: AccessLogOpt = False, smtp_port: SmtpPortOpt = None,
          smtps_port: SmtpsPortOpt = None) -> None:
    """Run the server only (agents connect to it over /mobile/v1)."""
    from simgate.serve.runner import prepare_store, serve_forever

    settings = settings_from(host, port, data_dir, workers=workers, tls_cert=tls_cert,
                             tls_key=tls_key, access_log=access_log or None,
                             smtp_port=smtp_port, smtps_port=smtps_port)
    claim(settings)
    _print_notices(settings)
    if settings.workers == 1:
        run_async(serve_forever(settings))
        return
    from simgate.serve.workers import WorkerFailed, serve_workers

    run_async(prepare_store(settings))
    try:
        serve_workers(settings, settings.workers)
    except WorkerFailed as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise fail(f"cannot listen on {settings.host}:{settings.port}: {reason}") from None


ModeOpt = Annotated[SimSelectionMode, typer.Option(
    "--sim-selection", help="SIM for messages without simNumber.", case_sensitive=False)]


def _print_notices(settings: Settings) -> None:
    """One line for each setting that changes who may join or what leaves the server."""
    for line in notices(settings):
        console.print(f"[bold yellow]note:[/] {line}", soft_wrap=True)


def _print_ready(url: str, username: str, password: str, sims: list[SimSlot]) -> None:
    console.print(f"[bold green]simgate is running[/] at [bold]{url}[/]"
                  f"  (dashboard: {url}/, API docs: {url}/api/docs)", soft_wrap=True)
    console.print(f"  user: [bold]{username}[/]  password: [bold]{password}[/]")
    table = Table("SIM", "state", "phone number", "operator", "detail", box=None)
    for slot in sims:
        table.add_row(str(slot.sim_number), slot.status.value, slot.phone_number or "-",
                      slot.carrier_name or "-", slot.detail)
    console.print(table)
    console.print(
        f"  try: curl -u {username}:{password} -H 'Content-Type: application/json' "
        f"{url}/3rdparty/v1/messages -d '{{\"textMessage\": {{\"text\": \"Hello from SIM2\"}}, "
        f"\"phoneNumbers\": [\"+19162255887\"], \"simNumber\": 2}}'",
        soft_wrap=True,
    )


@app.command(short_help="Run everything in one process: server, agent, emulated SIMs.")
def run(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    sims: Annotated[int, typer.Option("--sims", min=1, max=MAX_SIM_SLOTS,
                                      help="Number of emulated SIM slots.")] = 2,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help=FAULT_HELP)] = None,
    sim_selection: ModeOpt = SimSelectionMode.OS_DEFAULT,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    access_log: AccessLogOpt = False,
    smtp_port: SmtpPortOpt = None,
    smtps_port: SmtpsPortOpt = None,
) -> None:
    """Run everything in one process: server, agent and an emulated multi-SIM modem."""
    from simgate.agent.backends.emulator import EmulatorBackend
    from simgate.serve.runner import run_all_in_one

    settings = settings_from(host, port, data_dir, tls_cert=tls_cert, tls_key=tls_key,
                             access_log=access_log or None, smtp_port=smtp_port,
                             smtps_port=smtps_port)
    claim(settings)
    _print_notices(settings)
    backend = partial(EmulatorBackend, sims=sims, faults=_parse_faults(fault or [], sims),
                      state_path=emulator_memory(settings.data_dir))
    with contextlib.suppress(KeyboardInterrupt):
        run_async(run_all_in_one(settings, backend, sim_selection, _print_ready))


FAULT_HELP = ("Emulated fault, SIM:KIND with KIND absent, pin, no-network, echo, interleave, "
              "fail=<rate>, delay=<seconds>, prompt-delay=<seconds>, report-delay=<seconds>, "
              "fail-part=<n>, capacity=<messages> or lose-network=<sends> (the network "
              "goes after that many sends); repeatable.")
FLAG_FAULTS = ("absent", "pin", "no-network", "echo", "interleave")
NUMBER_FAULTS = {"fail": float, "delay": float, "prompt-delay": float, "report-delay": float,
                 "fail-part": int, "capacity": int, "lose-network": int}


def _parse_faults(specs: list[str], sims: int) -> dict[int, dict[str, float | bool]]:
    """`2:pin` -> {1: {"pin": True}}: 0-based slot, one dict of faults per slot."""
    faults: dict[int, dict[str, float | bool]] = {}
    for spec in specs:
        number, _, kind = spec.partition(":")
        if not number.isdigit() or not 1 <= int(number) <= sims or not kind:
            raise fail(f"--fault {spec!r}: expected SIM:KIND with SIM in 1..{sims}")
        name, _, value = kind.partition("=")
        slot_faults = faults.setdefault(int(number) - 1, {})
        if name in FLAG_FAULTS and not value:
            slot_faults[name.replace("-", "_")] = True
        elif name in NUMBER_FAULTS and value:
            try:
                amount = NUMBER_FAULTS[name](value)
            except ValueError:
                raise fail(f"--fault {spec!r}: {value!r} is not a number") from None
            if amount < 0:
                raise fail(f"--fault {spec!r}: {value!r} is negative")
            slot_faults[name.replace("-", "_")] = amount
        else:
            raise fail(f"--fault {spec!r}: unknown kind; use {', '.join(FLAG_FAULTS)}, or "
                       f"{', '.join(k + '=<n>' for k in NUMBER_FAULTS)}")
    return faults


@app.command(short_help="Run the emulated multi-SIM modem alone, on a pty.")
def emulator(
    sims: Annotated[int, typer.Option("--sims", min=1, max=MAX_SIM_SLOTS,
                                      help="Number of emulated SIM slots.")] = 2,
    fault: Annotated[list[str] | None, typer.Option("--fault", help=FAULT_HELP)] = None,
) -> None:
    """Run the emulated multi-SIM modem alone, one pseudo-terminal per SIM, until Ctrl-C.

    Prints `SIM <n> <pty path> <phone number>` per SIM; any AT-speaking SMS software
    (Gammu, Kannel, python-gsmmodem, simgate agent --modem) can use the ptys, and SMS
    sent from one SIM to another's number arrive there.
    """
    from simgate.agent.backends.emulator import EmulatedNetwork

    network = EmulatedNetwork(sims, faults=_parse_faults(fault or [], sims))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
            loop.add_signal_handler(signum, stop.set)
        network.start()
        try:
            for sim in network.sims:
                typer.echo(f"SIM {sim.slot + 1} {sim.port} {sim.number}")
            await stop.wait()
        finally:
            network.close()

    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve())


@app.command()
def agent(
    server: Annotated[str, typer.Option("--server", help="URL of the simgate server.")],
    modem: Annotated[list[str] | None, typer.Option(
        "--modem", help="Serial port of a GSM modem, one SIM slot each, in order.")] = None,
    termux: Annotated[bool, typer.Option("--termux", help="Use this Android phone's SIMs "
                                         "through Termux:API.")] = False,
    emulator: Annotated[int, typer.Option("--emulator", min=0, max=MAX_SIM_SLOTS,
                                          help="Emulate this many SIM slots.")] = 0,
    username: Annotated[str | None, typer.Option(
        "--username", envvar="SIMGATE_USERNAME", help="User to register the device with.")] = None,
    password: Annotated[str | None, typer.Option(
        "--password", envvar="SIMGATE_PASSWORD", help="That user's password.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Device name.")] = None,
    data_dir: DataDirOpt = None,
    sim_selection: ModeOpt = SimSelectionMode.OS_DEFAULT,
) -> None:
    """Run an agent next to the SIM cards, connected to a server."""
    from simgate.agent.agent import AgentConfig
    from simgate.serve.runner import run_agent

    chosen = [bool(modem), termux, emulator > 0]
    if sum(chosen) != 1:
        raise fail("choose exactly one SIM backend: --modem PORT (repeatable), --termux "
                   "or --emulator N")
    if modem:  # a port that cannot be opened: say so, and register no device for it
        from simgate.agent.doctor import serial_findings

        for finding in serial_findings(modem):
            if finding.status == "fail":
                raise fail(f"{finding.check} {finding.detail}: {finding.fix}")
    settings = settings_from(data_dir=data_dir)
    backend = _backend(modem or [], termux, emulator, settings.data_dir)
    config = AgentConfig(server_url=server, journal_path=settings.data_dir / "agent" / "journal.db",
                         username=username, password=password, sim_selection_mode=sim_selection,
                         heartbeat_interval=settings.heartbeat_seconds,
                         **({"name": name} if name else {}))
    with contextlib.suppress(KeyboardInterrupt):
        run_async(run_agent(config, backend))


def _backend(modems: list[str], termux: bool, emulator: int, data_dir: Path) -> SimBackend:
    if modems:
        from simgate.agent.backends.at import AtBackend

        return AtBackend(modems)
    if termux:
        from simgate.agent.backends.termux import TermuxBackend

        return TermuxBackend(state_path=data_dir / "agent" / "termux-inbox.json")
    from simgate.agent.backends.emulator import EmulatorBackend

    return EmulatorBackend(sims=emulator, state_path=emulator_memory(data_dir))


def emulator_memory(data_dir: Path) -> Path:
    """Where the emulated SIMs keep their stores and the network its owed reports."""
    return data_dir / "agent" / "emulated-network.db"


UserOpt = Annotated[str | None, typer.Option("--username", envvar="SIMGATE_USERNAME",
                                             help="API user.")]
PasswordOpt = Annotated[str | None, typer.Option("--password", envvar="SIMGATE_PASSWORD",
                                                 help="That user's password.")]


def _stored_credentials(username: str | None, password: str | None,
                        data_dir: Path | None) -> tuple[str | None, str | None]:
    """Fall back to the credentials `simgate run` made in its data directory."""
    if username and password:
        return username, password
    return local_gateway(settings_from(data_dir=data_dir).data_dir)[1] or (username, password)


@app.command(short_help="Check modems, SIMs, server, webhooks; say what to do.")
def doctor(
    server: Annotated[str | None, typer.Option(
        "--server", help="Check this server; default, with no other check given: the one"
        " last started on --data-dir (its server.json), with its credentials.json.")] = None,
    modem: Annotated[list[str] | None, typer.Option("--modem", help="Serial port to check.")]
    = None,
    termux: Annotated[bool, typer.Option("--termux", help="Check Termux:API.")] = False,
    emulator: Annotated[int, typer.Option(
        "--emulator", min=0, max=MAX_SIM_SLOTS,
        help="Check the built-in emulated modem with this many SIM slots (0: not).")] = 0,
    username: UserOpt = None,
    password: PasswordOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check ports, modems, SIMs, network, Termux:API, server, webhooks and the agent's
    journal; say what to do.

    With no option, checks the local gateway: the server started on the data directory
    (./simgate-data, or --data-dir), with the credentials `simgate run` keeps there.
    Exit code: 0 all checks pass or warn, 4 the server is unreachable, 3 no credentials
    or refused ones, 1 another check failed.
    """
    from simgate.agent import doctor as checks

    local = settings_from(data_dir=data_dir).data_dir
    start = "`simgate run` (or `simgate serve`) on that host"
    if not (server or modem or termux or emulator):
        server = local_server(data_dir, username)
        # `run` keeps its user's credentials beside server.json; `serve` does not
        start = ("`simgate serve`" if (local / SERVER_FILE).exists()
                 and not (local / CREDENTIALS_FILE).exists() else "`simgate run`")
    looked_at = ("--username/--password, SIMGATE_USERNAME/SIMGATE_PASSWORD and"
                 f" {(local if local.is_absolute() else Path.cwd() / local) / CREDENTIALS_FILE}"
                 " (from another directory, give --data-dir or set SIMGATE_DATA_DIR)")

    async def examine() -> list[checks.Finding]:
        found: list[checks.Finding] = []
        if modem:
            found += checks.serial_findings(modem)
        if termux:
            found += checks.termux_findings()
        if modem or termux or emulator:
            found += await checks.backend_findings(
                _backend(modem or [], termux, emulator, settings_from(data_dir=data_dir).data_dir))
        if server:
            user, secret = _stored_credentials(username, password, data_dir)
            found += await checks.server_findings(server, user, secret, start, looked_at)
        found += checks.journal_findings(
            settings_from(data_dir=data_dir).data_dir / "agent" / "journal.db")
        return found

    findings = run_async(examine())
    table = Table("check", "status", "detail", "what to do")
    colors = {"pass": "green", "warn": "yellow", "fail": "red"}
    for f in findings:
        table.add_row(f.check, f"[{colors[f.status]}]{f.status}[/]", f.detail, f.fix)
    console.print(table)
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        code = (4 if any(f.check == "server" for f in failed)
                else 3 if any(f.check == "credentials" for f in failed) else 1)
        raise fail(f"{len(failed)} check(s) failed", code)


@users_app.command("add")
def users_add(
    name: str,
    password: Annotated[str | None, typer.Option(
        help="Password; asked for when not given.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user."""
    from simgate.serve.runner import with_gateway

    settings = settings_from(data_dir=data_dir)
    secret = password or getpass.getpass(f"password for {name}: ")
    run_async(with_gateway(settings, lambda g: g.users.add(name, secret)))
    console.print(f"user [bold]{name}[/] created")


@users_app.command("passwd")
def users_passwd(
    name: str,
    password: Annotated[str | None, typer.Option(
        help="New password; asked for when not given.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a user's password."""
    from simgate.serve.runner import with_gateway

    settings = settings_from(data_dir=data_dir)
    secret = password or getpass.getpass(f"new password for {name}: ")
    run_async(with_gateway(settings, lambda g: g.users.set_password(name, secret)))
    console.print(f"password of [bold]{name}[/] changed")


def _require_store(settings: Settings) -> None:
    """A read-only command does not make a store where there is none."""
    if settings.database_url is None and not (settings.data_dir / "simgate.db").exists():
        raise fail(f"no store yet in {settings.data_dir}: `simgate run` or `simgate serve`"
                   " makes one there (or give --data-dir of an existing one)")


@users_app.command("list")
def users_list(data_dir: DataDirOpt = None) -> None:
    """List users."""
    from simgate.serve.runner import with_gateway

    settings = settings_from(data_dir=data_dir)
    _require_store(settings)
    for user in run_async(with_gateway(settings, lambda g: g.users.list())):
        console.print(f"{user.id}\t{user.username}\t{user.created_at:%Y-%m-%d %H:%M}")


def main() -> None:
    app()


@tls_app.command("init")
def tls_init(
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Where the CA and the certificate go [default: DATA_DIR/tls].")] = None,
    name: Annotated[list[str] | None, typer.Option(
        "--name", help="Another name or address the phones use; repeatable.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make a local CA (kept and reused) and a server certificate for this host's names
    and LAN addresses, and say how to install the CA on a phone."""
    from simgate.serve.tls import issue

    target = directory or settings_from(data_dir=data_dir).data_dir / "tls"
    try:
        issued = issue(target, name or [])
    except UnsafeFile as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write to {target}: {exc.strerror or exc}") from None
    names = ", ".join([*issued.names, *map(str, issued.addresses)])
    console.print(f"[bold green]certificate made[/] for {names}", soft_wrap=True)
    console.print(f"  CA certificate: {issued.ca_cert}"
                  + ("  (new: install it on the phones)" if issued.new_ca else
                     "  (kept: phones that trust it need nothing new)"), soft_wrap=True)
    console.print(f"  server: --tls-cert {issued.server_cert} --tls-key {issued.server_key}",
                  soft_wrap=True)
    lan = next((a for a in issued.addresses if not a.is_loopback), None)
    host = f"[{lan}]" if lan is not None and lan.version == 6 else str(lan or "HOST")
    console.print(
        "\nOn each Android phone:\n"
        f"  1. copy {issued.ca_cert.name} to the phone (USB, e-mail, a download)\n"
        "  2. Settings -> Security (and privacy) -> More security settings -> Encryption &"
        " credentials -> Install a certificate -> CA certificate, and pick the file\n"
        "  3. in SMS Gateway: Settings -> Cloud server -> API URL"
        f" https://{host}:PORT/mobile/v1\n"
        "Agents and scripts on other hosts: trust it with SSL_CERT_FILE="
        f"{issued.ca_cert} (or curl --cacert).", soft_wrap=True)
