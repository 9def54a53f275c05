"""Where the server is and who the user is: flags, SIMGATE_* variables, a client config
file, then the local gateway that `simgate run` left in its data directory."""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from simgate.files import UnsafeFile, check_private, read_private

DEFAULT_PORT = 3000
SERVER_FILE = "server.json"  # written by `run`/`serve` in their data directory
CREDENTIALS_FILE = "credentials.json"  # written by `run` when it made its user


class ConfigError(Exception):
    """The configuration cannot be used as it is; the message says how to fix it."""


@dataclass(frozen=True)
class Target:
    """A server and the credentials to use there (a token, or a user and password)."""

    server: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    source: str = "flags"  # where the credentials came from, for error messages


def config_path() -> Path:
    """SIMGATE_CLIENT_CONFIG, else $XDG_CONFIG_HOME/simgate/client.toml (~/.config/...)."""
    if explicit := os.environ.get("SIMGATE_CLIENT_CONFIG"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "simgate" / "client.toml"


def read_config(path: Path) -> dict[str, str]:
    """The file's `server`, `username`, `password` and `token`; nothing if it is absent.

    Like ssh with its keys, a file with a secret that others may read is refused: a
    password left readable is a password given away; and so is one another user owns or
    may change (it names the server the credentials go to)."""
    try:
        with path.open("rb") as file:
            info, raw = os.fstat(file.fileno()), file.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"server", "username", "password", "token"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the keys are"
                          " server, username, password and token")
    if not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: every value is a string in quotes")
    try:
        check_private(path, info, others_may_read=not (data.get("password") or data.get("token")))
    except UnsafeFile as exc:
        raise ConfigError(str(exc)) from None
    return data


def local_gateway(data_dir: Path) -> tuple[str | None, tuple[str, str] | None]:
    """The URL of the server last started on `data_dir`, and the user `run` made there,
    each only from a file of the user's own that others may not change (credentials.json
    not read either): ./simgate-data in a directory another user controls is not ours."""
    url = credentials = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, UnsafeFile):
        url = json.loads(_read_trusted(data_dir / SERVER_FILE))["url"]
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, UnsafeFile):
        stored = json.loads(read_private(data_dir / CREDENTIALS_FILE))
        credentials = (stored["username"], stored["password"])
    return url, credentials


def _read_trusted(path: Path) -> bytes:
    """A file that names where credentials go: the user's own, closed to others' changes."""
    with path.open("rb") as file:
        check_private(path, os.fstat(file.fileno()), others_may_read=True)
        return file.read()


def resolve(server: str | None, username: str | None, password: str | None,
            token: str | None, data_dir: Path, port: int = DEFAULT_PORT) -> Target:
    """The first of: flags or SIMGATE_* variables, the config file, the local gateway.

    The local gateway's URL (its server.json) is used only with its own credentials
    (credentials.json), or none: credentials given any other way never go to a URL found
    in the working directory."""
    path = config_path()
    file = read_config(path)
    local_url, local_credentials = local_gateway(data_dir)
    if token or username or file.get("token") or file.get("username"):
        local_url = None
    url = server or file.get("server") or local_url or f"http://127.0.0.1:{port}"
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"server {url!r}: give a URL such as http://host:{DEFAULT_PORT}")
    url = url.rstrip("/")
    if token:
        return Target(url, token=token)
    if username and password:
        return Target(url, username, password)
    if file.get("token") and not username:
        return Target(url, token=file["token"], source=str(path))
    if file.get("username") and file.get("password") and not username:
        return Target(url, file["username"], file["password"], source=str(path))
    if local_credentials and url == local_url and not username:
        return Target(url, *local_credentials, source=str(data_dir / CREDENTIALS_FILE))
    return Target(url, username, password, source="none")
