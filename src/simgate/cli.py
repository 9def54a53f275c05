"""The `simgate` command: run, serve, agent, users."""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from simgate import __version__
from simgate.config import Settings
from simgate.services.errors import ServiceError

app = typer.Typer(help="simgate: an SMS gateway for phones and GSM modems with SIM cards.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
users_app = typer.Typer(help="Manage the users who may call the API.", no_args_is_help=True)
app.add_typer(users_app, name="users")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

HostOpt = Annotated[str | None, typer.Option("--host", help="Listen address [SIMGATE_HOST].")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Listen port [SIMGATE_PORT].")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where SQLite and state live [SIMGATE_DATA_DIR].")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def settings_from(host: str | None = None, port: int | None = None,
                  data_dir: Path | None = None, **extra: Any) -> Settings:
    overrides = {k: v for k, v in
                 {"host": host, "port": port, "data_dir": data_dir, **extra}.items()
                 if v is not None}
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise fail(f"invalid configuration: {exc}") from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ServiceError as exc:
        raise fail(exc.message) from None
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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run the server only (agents connect to it over /mobile/v1)."""
    from simgate.runner import serve_forever

    settings = settings_from(host, port, data_dir)
    run_async(serve_forever(settings))


@users_app.command("add")
def users_add(
    name: str,
    password: Annotated[str | None, typer.Option(
        help="Password; asked for when not given.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user."""
    from simgate.runner import with_gateway

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
    from simgate.runner import with_gateway

    settings = settings_from(data_dir=data_dir)
    secret = password or getpass.getpass(f"new password for {name}: ")
    run_async(with_gateway(settings, lambda g: g.users.set_password(name, secret)))
    console.print(f"password of [bold]{name}[/] changed")


@users_app.command("list")
def users_list(data_dir: DataDirOpt = None) -> None:
    """List users."""
    from simgate.runner import with_gateway

    settings = settings_from(data_dir=data_dir)
    for user in run_async(with_gateway(settings, lambda g: g.users.list())):
        console.print(f"{user.id}\t{user.username}\t{user.created_at:%Y-%m-%d %H:%M}")


def main() -> None:
    app()
