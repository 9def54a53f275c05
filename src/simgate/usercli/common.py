"""What every user command shares: the server and credential options, exit codes, and
errors as one line."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer
from rich.console import Console

from simgate.client.api import Api, ApiError
from simgate.client.bulk import BulkInputError
from simgate.client.config import DEFAULT_PORT, ConfigError, resolve

T = TypeVar("T")
out = Console(soft_wrap=True)  # tables and JSON: stdout
err = Console(stderr=True, soft_wrap=True)  # errors, progress: stderr


class Exit(IntEnum):
    """Exit codes scripts can rely on (README, "Exit codes")."""

    OK = 0
    ERROR = 1  # anything else: the server failed (5xx), an id not found...
    BAD_INPUT = 2  # bad options, CSV or config; the server said 400
    AUTH = 3  # no credentials, or the server refused them (401, 403)
    UNREACHABLE = 4  # no answer: connection refused, DNS, TLS, timeout
    PARTIAL = 5  # some messages were rejected or failed, the others went
    INTERRUPTED = 130  # Ctrl-C; a bulk send resumes when run again


def fail(message: str, code: Exit) -> typer.Exit:
    """One line on stderr, no traceback."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(int(code))


def code_of(error: ApiError) -> Exit:
    if error.status is None:
        return Exit.UNREACHABLE
    if error.status in (401, 403):
        return Exit.AUTH
    if error.status in (400, 409, 413, 422):
        return Exit.BAD_INPUT
    return Exit.ERROR


ServerOpt = Annotated[str | None, typer.Option(
    "--server", envvar="SIMGATE_SERVER", show_envvar=False,
    help="URL of the server [SIMGATE_SERVER; else the client config file; else the"
         " gateway last started on ./simgate-data; else http://127.0.0.1:3000].")]
UserOpt = Annotated[str | None, typer.Option(
    "--username", envvar="SIMGATE_USERNAME", show_envvar=False,
    help="API user [SIMGATE_USERNAME; else the client config file].")]
PasswordOpt = Annotated[str | None, typer.Option(
    "--password", envvar="SIMGATE_PASSWORD", show_envvar=False,
    help="That user's password [SIMGATE_PASSWORD; prefer the variable or the config"
         " file: a flag shows in the process list].")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="SIMGATE_TOKEN", show_envvar=False,
    help="An API access token instead of a password [SIMGATE_TOKEN].")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="The local gateway's data directory, whose server.json and"
    " credentials.json are used when no server or credentials are given"
    " [SIMGATE_DATA_DIR; default: ./simgate-data].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


CONNECTION = {"server": ServerOpt, "username": UserOpt, "password": PasswordOpt,
              "token": TokenOpt, "data_dir": DataDirOpt}


def connected(command: Callable[..., None]) -> Callable[..., None]:
    """A user command that takes `connection: LazyApi` gets the --server, --username, --password and
    --token options in its place (one list of them for all commands), and the client
    they make: connecting is lazy, so the command's own checks of its input come first."""
    hints = get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    own = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
           if p.name != "connection"]
    options = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=kind) for name, kind in CONNECTION.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        where = {name: kwargs.pop(name) for name in CONNECTION}
        command(*args, connection=LazyApi(lambda: connect(**where)), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *options])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **CONNECTION}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's
    return wrapper


class LazyApi:
    """The API client, made on first use (a command may fail on its input before)."""

    def __init__(self, make: Callable[[], Api]) -> None:
        self._make = make
        self._api: Api | None = None

    def __call__(self) -> Api:
        if self._api is None:
            self._api = self._make()
        return self._api

    def run(self, work: Callable[[Api], Awaitable[T]]) -> T:
        """Connect, and run `work` with the client open (see `run`)."""
        return run(self(), work)


def connect(server: str | None, username: str | None, password: str | None,
            token: str | None, data_dir: Path | None = None) -> Api:
    """The API client for the chosen server and credentials, or a one-line exit."""
    from simgate.config import Settings

    try:  # the local gateway's data directory and port (SIMGATE_*, simgate.toml)
        local = Settings(**({"data_dir": data_dir} if data_dir else {}))
        data_dir, port = local.data_dir, local.port
    except ValueError:
        data_dir, port = data_dir or Path("simgate-data"), DEFAULT_PORT
    try:
        target = resolve(server, username, password, token, data_dir, port)
    except ConfigError as exc:
        raise fail(str(exc), Exit.BAD_INPUT) from None
    if not target.token and not (target.username and target.password):
        raise no_credentials(target.server, data_dir)
    return Api(target)


def no_credentials(server: str, data_dir: Path) -> typer.Exit:
    """Exit 3 naming every place credentials were looked for; exit 4 instead when the
    server does not answer at all (credentials would not help)."""
    import httpx

    from simgate.client.config import config_path

    try:
        httpx.get(f"{server}/health", timeout=5)
    except httpx.HTTPError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return fail(f"server {server} unreachable: {reason}", Exit.UNREACHABLE)
    here = data_dir if data_dir.is_absolute() else Path.cwd() / data_dir
    return fail(
        f"no credentials for {server}: looked at --username/--password and --token,"
        " SIMGATE_USERNAME/SIMGATE_PASSWORD and SIMGATE_TOKEN, the client config file"
        f" {config_path()}, and {here / 'credentials.json'} (kept by `simgate run` for the"
        " server it started; from another directory, give --data-dir or set"
        " SIMGATE_DATA_DIR)", Exit.AUTH)


def run(api: Api, work: Callable[[Api], Awaitable[T]]) -> T:
    """Run `work` with the client open; map every failure to a line and an exit code."""

    async def main() -> T:
        async with api:
            return await work(api)

    with one_line_errors():
        return asyncio.run(main())


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Each failure the user can act on as one line and its exit code."""
    try:
        yield
    except ApiError as exc:
        raise fail(exc.message, code_of(exc)) from None
    except (BulkInputError, ConfigError) as exc:
        raise fail(str(exc), Exit.BAD_INPUT) from None
    except OSError as exc:
        raise fail(str(exc), Exit.ERROR) from None
    except (ValueError, KeyError, TypeError) as exc:  # an answer not shaped as the API's
        raise fail(f"unexpected answer from the server ({type(exc).__name__}: {exc})",
                   Exit.ERROR) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def when(value: str | None) -> str:
    """An API time, shorter: 2026-11-27 16:35:32 (UTC offset dropped when Z)."""
    if not value:
        return "-"
    return value.replace("T", " ").split(".")[0].removesuffix("Z").removesuffix("+00:00")
