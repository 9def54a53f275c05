"""Device settings: groups of snake_case keys as sms-gate.app has them, with their rules.

`null` resets a key to its default; write-only keys (secrets) are never shown.
"""

from __future__ import annotations

import copy
import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simgate.domain.routing import SimSelectionMode


class LimitPeriod(enum.StrEnum):
    DISABLED = "Disabled"
    PER_MINUTE = "PerMinute"
    PER_HOUR = "PerHour"
    PER_DAY = "PerDay"


class ProcessingOrder(enum.StrEnum):
    LIFO = "LIFO"
    FIFO = "FIFO"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class MessagesSettings(_Group):
    sim_selection_mode: SimSelectionMode = SimSelectionMode.OS_DEFAULT
    send_interval_min: Annotated[int | None, Field(ge=0, le=3600)] = None
    send_interval_max: Annotated[int | None, Field(ge=0, le=3600)] = None
    limit_period: LimitPeriod = LimitPeriod.DISABLED
    limit_value: Annotated[int | None, Field(ge=1)] = None
    log_lifetime_days: Annotated[int | None, Field(ge=1)] = None
    processing_order: ProcessingOrder = ProcessingOrder.LIFO

    @model_validator(mode="after")
    def _consistent(self) -> MessagesSettings:
        low, high = self.send_interval_min, self.send_interval_max
        if low is not None and high is not None and low > high:
            raise ValueError("messages.send_interval_min must not exceed send_interval_max")
        if self.limit_period != LimitPeriod.DISABLED and self.limit_value is None:
            raise ValueError("messages.limit_value is required when limit_period is set")
        return self


class WebhooksSettings(_Group):
    retry_count: Annotated[int, Field(ge=0, le=100)] = 14
    internet_required: bool = True
    signing_key: Annotated[str | None, Field(max_length=256)] = None


class PingSettings(_Group):
    interval_seconds: Annotated[int | None, Field(ge=10, le=86400)] = None


class LogsSettings(_Group):
    lifetime_days: Annotated[int, Field(ge=1, le=3650)] = 30


class GatewaySettings(_Group):
    notification_channel: Annotated[str | None, Field(max_length=32)] = None
    cloud_url: Annotated[str | None, Field(max_length=2048)] = None
    private_token: Annotated[str | None, Field(max_length=256)] = None


class EncryptionSettings(_Group):
    passphrase: Annotated[str | None, Field(max_length=256)] = None


class DeviceSettings(_Group):
    messages: MessagesSettings = MessagesSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    ping: PingSettings = PingSettings()
    logs: LogsSettings = LogsSettings()
    gateway: GatewaySettings = GatewaySettings()
    encryption: EncryptionSettings = EncryptionSettings()


WRITE_ONLY = {("webhooks", "signing_key"), ("encryption", "passphrase"),
              ("gateway", "private_token")}
# Shown in place of a secret: whether it is set (a simgate addition, ignored on write).
SHOWN_AS_SET = {("webhooks", "signing_key"): "signing_key_set"}


class InvalidSettings(ValueError):
    """Says which key is wrong and what it accepts."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        elif item["type"] == "enum":
            message = "allowed values: " + item["ctx"]["expected"]
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)


def _strip_nulls(values: dict[str, Any]) -> dict[str, Any]:
    """`null` means "back to the default": drop the key so the default applies."""
    return {g: {k: v for k, v in keys.items() if v is not None} if isinstance(keys, dict)
            else keys for g, keys in values.items()}


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


def with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Every key of every group, defaults filled in."""
    return DeviceSettings.model_validate(values).model_dump(mode="json")


def merge(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: deep-merge per group; a null value resets that key (or group)."""
    merged = copy.deepcopy(stored)
    for group, keys in patch.items():
        if keys is None:
            if group not in DeviceSettings.model_fields:
                raise InvalidSettings(f"{group}: unknown setting")
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
