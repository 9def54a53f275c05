"""Configuration: SIMGATE_* environment variables, then an optional simgate.toml."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from simgate.files import UnsafeFile, check_private

CONFIG_FILE = "simgate.toml"  # in the working directory
SECRET_KEYS = ("password", "private_token", "database_url")


def _check_config_file(path: Path) -> None:
    """A config file sets the user's password and where webhooks may go: another user's,
    or one others may change, is refused (as a planted file would be obeyed), and one
    with a secret in it must be closed to others."""
    try:
        info = path.stat()
        secret = bool(set(tomllib.loads(path.read_text())) & set(SECRET_KEYS))
    except (OSError, ValueError):
        return  # absent, unreadable or not TOML: the settings source says so
    try:
        check_private(path.resolve(), info, others_may_read=not secret)
    except UnsafeFile as exc:
        raise ValueError(str(exc)) from None


class Settings(BaseSettings):
    """Everything the server and agent read at start."""

    model_config = SettingsConfigDict(
        env_prefix="SIMGATE_", toml_file=CONFIG_FILE, extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path = Path("simgate-data")
    database_url: str | None = None
    username: str | None = None
    password: str | None = None
    # The server key: a device that registers with it (Authorization: Bearer <key>, the
    # Android app's "private server" mode) gets a new user of its own. Unset: no such joins.
    private_token: str | None = None
    # `public`: a device may also join with no credentials at all and get a user of its own
    # (the original's public mode), a few joins per address an hour. `private` (the
    # default): only with a code, a user's login or the server key.
    mode: Literal["private", "public"] = "private"
    # Region used to read numbers written without a country code.
    default_region: str = "US"
    # Webhook receivers on loopback/private addresses (an SSRF guard when off).
    allow_private_webhooks: bool = False
    # Webhook delivery: per-request timeout and the first retry delay (doubling after).
    webhook_timeout: float = Field(default=30.0, gt=0)
    webhook_retry_base: float = Field(default=10.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (comma-separated, "*" for any): behind one,
    # the per-address limits must see clients, not the proxy. None by default: any local
    # process could otherwise claim to be any address.
    forwarded_allow_ips: str = ""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Downloaded MMS (mms:downloaded): the bytes of one message's parts, and of all the
    # parts one user keeps, stored in the store. Parts past a cap keep their metadata only.
    # A phone's ingest posts may be as large as one message's parts in base64.
    mms_max_bytes: int = Field(default=3_145_728, ge=1024)
    mms_max_bytes_per_user: int = Field(default=268_435_456, ge=0)
    # Slow clients: a request's headers must arrive within header_timeout seconds, its body
    # within body_timeout plus one second per 500 bytes; one address may hold at most
    # max_connections_per_address connections per server process (0: no cap).
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=20.0, gt=0)
    max_connections_per_address: int = Field(default=256, ge=0)
    # Pending messages one device may have before sends to it get 503 (0: no limit).
    max_queued_per_device: int = Field(default=10_000, ge=0)
    # Finished messages keep their text and numbers this long, then only SHA-256 hashes
    # (the original's HashingIntervalSeconds).
    hashing_interval_seconds: float = Field(default=60.0, gt=0)
    # How often an agent tells the server it is alive (system:ping is a setting apart).
    heartbeat_seconds: float = Field(default=60.0, gt=0)
    # Server processes sharing the port; more than the number of cores does not help.
    workers: int = Field(default=1, ge=1, le=64)
    # Redis (or Valkey) carrying pushes and cache news between replicas on any hosts
    # ("redis://host:6379/0"); unset: the workers of one host talk over local sockets.
    bus_url: str | None = None
    # the channel on it; unset: one per store URL, so the replicas of one store hear each
    # other and several gateways may share a Redis (set it when replicas name their store
    # differently, such as by another host name)
    bus_channel: str | None = Field(default=None, max_length=200)
    log_level: str = "info"
    # FCM pushes to Android apps with an FCM token through sms-gate.app's upstream service,
    # as the original's private mode: only the token, the event name and ids leave the
    # server. Off: such phones are handed notification_channel SSE_ONLY. See README.
    push_relay: bool = True
    push_relay_url: str = "https://api.sms-gate.app/upstream/v1"
    push_relay_debounce: float = Field(default=5.0, ge=0.1, le=60)
    # The address phones and clients reach this server at ("https://gw.example.org"): the
    # base of every URL simgate hands out (ingest hooks, Location, the API catalog).
    # Unset: the request's own (its forwarded scheme only from forwarded_allow_ips).
    public_url: str | None = None
    # HTTPS: the certificate (PEM, with its chain) and its key; `simgate tls init` makes a
    # pair a phone accepts once it trusts the local CA.
    # A comment line on idle device event streams this often keeps NAT and proxies open.
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Email to SMS: the SMTP port (unset: no SMTP); AUTH over plain text from other hosts
    # than loopback only when allowed (STARTTLS is offered with the TLS certificate);
    # `Subject: ` before the text when asked.
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtps_port: int | None = Field(default=None, ge=1, le=65535)  # TLS from the first byte
    smtp_allow_plain_auth: bool = False
    smtp_subject: bool = False
    # SMS to email: the relay that mailto: webhooks go out through
    # (smtp://user:password@host:port, STARTTLS when offered; smtps:// for TLS), and the
    # From of those emails.
    smtp_relay: str | None = None
    smtp_relay_from: str = "simgate@localhost"
    # Who may read /metrics (it names every device): addresses or networks, comma-separated.
    metrics_allow_ips: str = "127.0.0.1,::1"
    # One line per HTTP request (uvicorn's access log).
    access_log: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if self.smtps_port and self.tls_cert is None:
            raise ValueError("--smtps-port needs the TLS certificate: give --tls-cert and"
                             " --tls-key (SIMGATE_TLS_CERT, SIMGATE_TLS_KEY)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key (SIMGATE_TLS_CERT and"
                             " SIMGATE_TLS_KEY), or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file: make a certificate with"
                                 " `simgate tls init`")
        if self.tls_key is not None:
            try:  # a private key: the user's own (or root's, readable by a group)
                check_private(self.tls_key, self.tls_key.stat(), group_may_read=True)
            except UnsafeFile as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        """An origin with an optional path, without a trailing slash; empty is unset."""
        if not value or not value.strip():
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(f"SIMGATE_PUBLIC_URL {value[:64]!r}: give the address phones"
                             " reach, such as https://gw.example.org (no query)")
        return value.strip().rstrip("/")

    @field_validator("smtp_relay")
    @classmethod
    def _smtp_relay(cls, value: str | None) -> str | None:
        """smtp:// or smtps:// with a host; empty is unset. The password stays unshown."""
        if not value or not value.strip():
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise ValueError("SIMGATE_SMTP_RELAY must be smtp://user:password@host:port (user"
                             " and port optional"
                             ", STARTTLS when offered) or smtps://... (TLS)")
        return value.strip()

    @field_validator("private_token")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        """An empty key (`SIMGATE_PRIVATE_TOKEN=` in a compose file) is no key: it would
        let anyone in with an empty Bearer."""
        return value if value and value.strip() else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        _check_config_file(Path(CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        """The database URL: SIMGATE_DATABASE_URL, else SQLite in the data directory."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'simgate.db').resolve()}"


def configure_logging() -> None:
    """Timestamped INFO logs on stderr, without the chatter of HTTP clients and migrations."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def apply_log_level(level: str) -> None:
    """SIMGATE_LOG_LEVEL for simgate's own lines too, not only the HTTP server's: at
    `warning` no INFO line is formatted and written per accepted batch or send."""
    number = logging.getLevelName(level.upper())
    if isinstance(number, int):  # uvicorn's `trace` is no logging level: left as it is
        logging.getLogger().setLevel(number)


def notices(settings: Settings) -> list[str]:
    """What the operator must know at start: who may join without an account, and what
    leaves the server."""
    lines = []
    if settings.push_relay:
        lines.append(f"push relay on: for phones with an FCM token, the token, the event name"
                     f" and ids (a message id, a period) go to {settings.push_relay_url} and"
                     " on to Google's FCM, never text or numbers; SIMGATE_PUSH_RELAY=false"
                     " turns it off (phones then keep an event stream open instead)")
    if settings.mode == "public":
        lines.append("public mode (SIMGATE_MODE=public): any device may join with no"
                     " credentials and gets a user of its own, at most 5 an hour per address;"
                     " set SIMGATE_MODE=private to allow only codes, logins and the server key")
    return lines
