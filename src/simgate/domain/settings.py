"""Device settings: groups of snake_case keys as sms-gate.app has them, with their rules.

`null` resets a key to its default; write-only keys (secrets) are never shown.
"""

from __future__ import annotations

import copy
import enum
import re
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from simgate.domain.routing import SimSelectionMode, Strategy


class LimitPeriod(enum.StrEnum):
    DISABLED = "Disabled"
    PER_MINUTE = "PerMinute"
    PER_30_MINUTES = "Per30Minutes"
    PER_HOUR = "PerHour"
    PER_DAY = "PerDay"


class NotificationChannel(enum.StrEnum):
    """How the Android app is woken: push with SSE as fallback, or SSE alone."""

    AUTO = "AUTO"
    SSE_ONLY = "SSE_ONLY"


# The app reads every number into a Kotlin Int.
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
# 24-hour HH:mm, as the original documents work_hours_start/end.
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class _Group(BaseModel):
    # keys the original does not keep are dropped (and named by `dropped`), not refused
    model_config = ConfigDict(extra="ignore", use_enum_values=True)


class MessagesSettings(_Group):
    sim_selection_mode: SimSelectionMode = SimSelectionMode.OS_DEFAULT
    send_interval_min: Count | None = None
    send_interval_max: Count | None = None
    limit_period: LimitPeriod = LimitPeriod.DISABLED
    limit_value: Count | None = None  # none (or 0): no limit, whatever the period
    log_lifetime_days: Count | None = None
    # no sends outside [start, end) of the device's local time; end before start spans
    # midnight
    work_hours_enabled: bool = False
    work_hours_start: ClockTime = "09:00"
    work_hours_end: ClockTime = "19:00"

    @model_validator(mode="after")
    def _consistent(self) -> MessagesSettings:
        low, high = self.send_interval_min, self.send_interval_max
        if low is not None and high is not None and low > high:
            raise ValueError("messages.send_interval_min must not exceed send_interval_max")
        return self


class WebhooksSettings(_Group):
    retry_count: Annotated[int, Field(le=100)] = 14
    internet_required: bool = True
    signing_key: Annotated[str | None, Field(max_length=256)] = None

    @field_validator("retry_count")
    @classmethod
    def _app_imports_it(cls, value: int) -> int:
        """The Android app refuses a retry count below 1 (WebhooksSettings.import), and
        then imports none of the settings, its signing key included."""
        if value < 1:
            raise ValueError("must be at least 1 (the Android app refuses a smaller one,"
                             " \"Retry count must be >= 1\", and then imports none of the"
                             " settings); null resets it to 14")
        return value


class PingSettings(_Group):
    # none: no system:ping events (the agent's heartbeat for health goes on regardless)
    interval_seconds: Count | None = None


class LogsSettings(_Group):
    lifetime_days: Annotated[int, Field(ge=1, le=3650)] = 30


class GatewaySettings(_Group):
    notification_channel: NotificationChannel = NotificationChannel.AUTO


class ReceiverSettings(_Group):
    # the Android app also watches its SMS content provider (a fallback for carriers that
    # hide the SMS_RECEIVED broadcast); simgate's agents have no such provider
    content_provider_enabled: bool = True


class EncryptionSettings(_Group):
    passphrase: Annotated[str | None, Field(max_length=256)] = None


SLOT_KEY = re.compile(r"[1-9][0-9]?")
DEVICE_KEY = re.compile(r"[A-Za-z0-9_-]{2,64}")
SlotKey = Annotated[str, Field(pattern=r"^[1-9][0-9]?$")]


class SimRouting(BaseModel):
    """`routing.sims."N"`: limits and preferences of SIM N (simgate's own)."""

    # simgate's own keys: a typo is refused, not dropped
    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    rate_per_minute: Count | None = None
    daily_limit: Count | None = None
    monthly_limit: Count | None = None
    unique_recipients_monthly: Count | None = None
    weight: Annotated[int, Field(ge=0, le=1000)] = 1
    prefixes: Annotated[list[Annotated[str, Field(pattern=r"^\+?[0-9]{1,15}$")]],
                        Field(max_length=100)] = []
    enabled: bool = True


def _sim_or_device(value: Any) -> str:
    """A device's group has SIM numbers for keys; a SIM's rules have names."""
    if isinstance(value, dict) and any(SLOT_KEY.fullmatch(str(k)) for k in value):
        return "device"
    return "sim"


SimOrDevice = Annotated[Annotated[SimRouting, Tag("sim")]
                        | Annotated[dict[SlotKey, SimRouting], Tag("device")],
                        Discriminator(_sim_or_device)]


class RoutingSettings(BaseModel):
    """simgate's routing beyond the original (the official clients ignore this group)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    strategy: Strategy | None = None  # None: messages.sim_selection_mode
    failover: bool = True
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # a SIM whose sends failed this many times in a row (SIM or network reasons) is left
    # out of rotation and failover for cooldown_seconds (0: never)
    cooldown_failures: Annotated[int, Field(ge=1, le=100)] = 3
    cooldown_seconds: Annotated[int, Field(ge=0, le=86400)] = 300
    # "N": SIM N of every device; a device id: that device's SIMs, {"N": {...}}, over those
    sims: dict[str, SimOrDevice] = {}
    # the zone of messages.work_hours_* for the phones the server routes (IANA, e.g.
    # "Europe/Berlin"; None: UTC); simgate's agent keeps them in its host's time
    timezone: Annotated[str | None, Field(max_length=64)] = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone: give an IANA name such as "
                                 "\"Europe/Berlin\" or \"UTC\"") from None
        return value

    @field_validator("sims", mode="before")
    @classmethod
    def _slots_or_devices(cls, value: Any) -> Any:
        """A slot key holds a SIM's rules, a device id its SIMs' rules: said plainly, not
        as the two failures of a union."""
        if not isinstance(value, dict):
            return value
        for key, rules in value.items():
            if SLOT_KEY.fullmatch(key):
                if isinstance(rules, dict) and any(SLOT_KEY.fullmatch(k) for k in rules):
                    raise ValueError(f"{key}: SIM rules go directly under the SIM number; "
                                     "group SIMs under a device id instead")
                continue
            if (key.isdigit() or not DEVICE_KEY.fullmatch(key) or not isinstance(rules, dict)
                    or not rules or not all(SLOT_KEY.fullmatch(k) for k in rules)):
                raise ValueError(f"{key!r}: name SIMs by their number, such as \"1\", or a "
                                 "device by its id with its SIMs inside, such as "
                                 "{\"<device id>\": {\"1\": {\"daily_limit\": 100}}}")
        return value


class DeviceSettings(_Group):
    messages: MessagesSettings = MessagesSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    ping: PingSettings = PingSettings()
    logs: LogsSettings = LogsSettings()
    gateway: GatewaySettings = GatewaySettings()
    encryption: EncryptionSettings = EncryptionSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    routing: RoutingSettings = RoutingSettings()


# 0 passes the original's `omitempty` checks as "not given": here it is the default too.
ZERO_IS_DEFAULT = {("messages", "send_interval_min"), ("messages", "send_interval_max"),
                   ("messages", "limit_value"), ("messages", "log_lifetime_days"),
                   ("ping", "interval_seconds"), ("logs", "lifetime_days")}


WRITE_ONLY = {("webhooks", "signing_key"), ("encryption", "passphrase")}
# Shown in place of a secret: whether it is set (a simgate addition, ignored on write).
SHOWN_AS_SET = {("webhooks", "signing_key"): "signing_key_set"}


class InvalidSettings(ValueError):
    """Says which key is wrong and what it accepts."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        key = ".".join(str(p) for p in item["loc"] if p not in ("sim", "device"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "enum":
            message = "allowed values: " + item["ctx"]["expected"]
        elif item["type"] == "string_pattern_mismatch" and item["loc"][:2] == ("routing", "sims"):
            message = ("name SIMs by their number, such as \"1\"" if item["loc"][-1] == "[key]"
                       else "a prefix is digits with an optional leading +, such as \"+44\"")
        elif item["type"] == "string_pattern_mismatch":
            message = "use a 24-hour HH:mm time, such as 09:00"
        elif item["type"] == "extra_forbidden":
            message = "unknown key; see the README section \"Routing beyond the original\""
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)


def _strip_nulls(values: dict[str, Any]) -> dict[str, Any]:
    """`null` (or an "omitempty" 0) means "back to the default": drop the key."""
    return {g: {k: v for k, v in keys.items()
                if v is not None and not (v == 0 and (g, k) in ZERO_IS_DEFAULT)}
            if isinstance(keys, dict) else keys for g, keys in values.items()}


def dropped(values: dict[str, Any]) -> list[str]:
    """The keys the original server drops without a word (it keeps only those it knows,
    `modules/settings/utils.go`): simgate drops the same ones and names them."""
    names = []
    for group, keys in _strip_shown(values).items():
        model = DeviceSettings.model_fields.get(group)
        if model is None:
            names.append(group)
        elif isinstance(keys, dict):
            known = model.annotation.model_fields  # type: ignore[union-attr]
            names.extend(f"{group}.{key}" for key in keys if key not in known)
    return names


def _strip_shown(values: dict[str, Any]) -> dict[str, Any]:
    """Drop the read-only keys GET shows, so what it showed can be written back."""
    stripped = dict(values)
    for (group, _), shown in SHOWN_AS_SET.items():
        if isinstance(stripped.get(group), dict) and shown in stripped[group]:
            stripped[group] = {k: v for k, v in stripped[group].items() if k != shown}
    return stripped


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """The keys that are set, checked and normalised; or InvalidSettings.

    Settings are stored sparse, so a device can tell what its owner chose from defaults.
    """
    try:
        model = DeviceSettings.model_validate(_strip_nulls(_strip_shown(values)))
    except ValidationError as error:
        raise InvalidSettings(_describe(error)) from None
    return model.model_dump(mode="json", exclude_unset=True)


def loaded(values: dict[str, Any]) -> dict[str, Any]:
    """Stored settings as the rules of today take them: a key stored under older, looser
    rules that they refuse (a retry count of 0) is left out, so it falls back to its
    default instead of failing every read, write and device import."""
    values = copy.deepcopy(values)
    for _ in range(32):
        try:
            DeviceSettings.model_validate(values)
            return values
        except ValidationError as error:
            for item in error.errors():
                group, *rest = item["loc"]
                keys = values.get(group)
                if rest and isinstance(keys, dict):
                    keys.pop(rest[0], None)
                else:
                    values.pop(group, None)
    return {}


def with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Every key of every group, defaults filled in."""
    return DeviceSettings.model_validate(values).model_dump(mode="json")


def merge(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: deep-merge per group; a null value resets that key (or group)."""
    merged = copy.deepcopy(stored)
    for group, keys in patch.items():
        if keys is None:
            merged.pop(group, None)
        elif isinstance(keys, dict) and isinstance(merged.get(group), dict):
            merged[group].update(keys)
        else:
            merged[group] = keys
    return validate(merged)


def public_view(values: dict[str, Any]) -> dict[str, Any]:
    """What users see: all keys with defaults, but not the write-only secrets."""
    shown = with_defaults(values)
    for group, key in WRITE_ONLY:
        secret = shown.get(group, {}).pop(key, None)
        if (group, key) in SHOWN_AS_SET:
            shown[group][SHOWN_AS_SET[group, key]] = bool(secret)
    return shown
