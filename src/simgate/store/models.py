"""SQLAlchemy 2 models: the durable state of the gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend: a date is brought to UTC on its
    way in (SQLite drops the offset and would keep the wall-clock time), in columns and
    in the values compared with them."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    push_token: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # where the server's round robin goes on for a device it routes (a phone)
    routing_cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    sims: Mapped[list[SimCard]] = relationship(
        back_populates="device",
        cascade="all, delete-orphan",
        order_by="SimCard.slot_index",
        lazy="selectin",
    )


class SimCard(Base):
    """One SIM slot of a device, as its agent last reported it."""

    __tablename__ = "sim_cards"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    slot_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="Ready")
    phone_number: Mapped[str | None] = mapped_column(String(32))
    carrier_name: Mapped[str | None] = mapped_column(String(64))
    iccid: Mapped[str | None] = mapped_column(String(32))
    signal: Mapped[int | None] = mapped_column(SmallInteger)
    detail: Mapped[str] = mapped_column(Text, default="")
    # routing skips the SIM until then: its sends kept failing (a cool-down)
    paused_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    # sends failed in a row for SIM or network reasons, as a phone reported them (the
    # server pauses the SIM at routing.cooldown_failures)
    failures: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    device: Mapped[Device] = relationship(back_populates="sims")


class SimUsage(Base):
    """Sends through one SIM in one period: a minute ("2026-11-27T16:45"), a day
    ("2026-11-27") or a month ("2026-11"), UTC; counted when a device claims a message."""

    __tablename__ = "sim_usage"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    slot_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    sends: Mapped[int] = mapped_column(Integer, default=0)


class SimRecipient(Base):
    """A distinct recipient of one SIM in one month (a hash of the number)."""

    __tablename__ = "sim_recipients"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    slot_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), primary_key=True)


class SimContact(Base):
    """The SIM of the last exchange with a contact (a hash of the number), either way:
    the Sticky strategy answers through it."""

    __tablename__ = "sim_contacts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    slot_index: Mapped[int] = mapped_column(SmallInteger)


class Message(Base):
    """An outgoing message; `ext_id` is the id users see (client-chosen or generated)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("user_id", "ext_id", name="uq_messages_user_ext_id"),
        Index("ix_messages_device_state", "device_id", "state"),
        Index("ix_messages_user_created", "user_id", "created_at"),
        Index("ix_messages_device_handout", "device_id", "handout_id"),
        Index("ix_messages_device_handed", "device_id", "handed_at"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ext_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)  # base64, data SMS
    port: Mapped[int | None] = mapped_column(Integer)
    is_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    is_hashed: Mapped[bool] = mapped_column(Boolean, default=False)
    with_delivery_report: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    sim_number: Mapped[int | None] = mapped_column(SmallInteger)  # as requested
    sim_used: Mapped[int | None] = mapped_column(SmallInteger)  # 1-based, as sent
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    schedule_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    states: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # every send attempt, failovers included: {sim_number, device_id, error, at}
    attempts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # why a Pending message waits (its SIMs at their limits), as its device said
    reason: Mapped[str | None] = mapped_column(Text)
    device_pinned: Mapped[bool] = mapped_column(Boolean, default=False)  # deviceId given
    # the id a phone knows the message by when it is handed to it again for another SIM
    # (the app skips ids it holds); None: the message's own id
    handout_id: Mapped[str | None] = mapped_column(String(36))
    # handed to a phone without a SIM: the phone picks one and says which in its events
    phone_chooses_sim: Mapped[bool] = mapped_column(Boolean, default=False,
                                                    server_default=false())
    # when the server handed it to a phone through `sim_used` (a phone's rate per minute
    # is held over the hand-outs of the last minute)
    handed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="message",
        cascade="all, delete-orphan",
        order_by="Recipient.position",
        lazy="selectin",
    )


class Recipient(Base):
    __tablename__ = "recipients"

    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.pk", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    phone_number: Mapped[str] = mapped_column(String(512))  # E.164, encrypted or a hash
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)

    message: Mapped[Message] = relationship(back_populates="recipients")


class UserSettings(Base):
    """The device settings of a user (groups of snake_case keys, as on the wire)."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Webhook(Base):
    """A registered receiver. Users name webhooks (`ext_id`, unique per user, as in the
    original); `id` is the store's own key, so one user's names say nothing of another's."""

    __tablename__ = "webhooks"
    __table_args__ = (
        Index("ix_webhooks_user_event", "user_id", "event"),
        Index("ux_webhooks_user_ext_id", "user_id", "ext_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(String(36))
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written with the change that caused it.

    `event_id` is the stable id receivers see; it is the same on every retry.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_webhook", "webhook_id", "status"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IncomingMessage(Base):
    """An SMS received on a SIM; (device_id, ident) de-duplicates agent retries."""

    __tablename__ = "incoming_messages"
    __table_args__ = (
        UniqueConstraint("device_id", "ident", name="uq_incoming_device_ident"),
        Index("ix_incoming_user_received", "user_id", "received_at"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    ident: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # SMS | DATA_SMS | MMS | MMS_DOWNLOADED
    sender: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(64))
    sim_number: Mapped[int | None] = mapped_column(SmallInteger)
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    port: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class IncomingAttachment(Base):
    """A part of a downloaded MMS (mms:downloaded), kept in the store beside its message:
    written in the same transaction as the message and its webhook events, shared by
    every server process and host, and removed with its message or user. `content` is
    None when the part was over the size caps (its metadata is kept)."""

    __tablename__ = "incoming_attachments"
    __table_args__ = (
        UniqueConstraint("message_pk", "part_id", name="uq_attachment_message_part"),
        Index("ix_attachments_user", "user_id"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("incoming_messages.pk", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    part_id: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)  # the phone's count, or the bytes kept
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # for the user's cap
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class LogEntry(Base):
    """A structured log entry of the server or of a device, kept per logs.lifetime_days."""

    __tablename__ = "log_entries"
    __table_args__ = (Index("ix_logs_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(String(36))
    priority: Mapped[str] = mapped_column(String(8))  # DEBUG | INFO | WARN | ERROR
    module: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiToken(Base):
    """An access token and its refresh token: the row's id is both tokens' `jti`.

    Only hashes of the tokens are kept, as for devices: the signing key alone cannot make
    a token this table accepts. A pair minted with another token (`parent_id`) has no
    refresh token, ends no later than its parent, and is revoked with it.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    access_hash: Mapped[str] = mapped_column(String(64))
    refresh_hash: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the last of the two tokens
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class UserCode(Base):
    """A short one-time code that lets a device join its user without the password."""

    __tablename__ = "user_codes"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime)


class IngestedEvent(Base):
    """An event a phone posted to its ingest hook and simgate acted on, by the id the
    phone gave it: the same signed post again is answered, not acted on twice. Kept a
    while longer than a signature is good for."""

    __tablename__ = "ingested_events"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"),
                                           primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ServerSecret(Base):
    """Keys the server makes once and every worker shares (the token signing key)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class CredentialStamp(Base):
    """A counter raised in the transaction that changes a user's password ("passwords:<user
    id>", made at the first change; "passwords" is server-wide) or revokes a token
    ("tokens"): every process reads it to know its remembered checks still hold."""

    __tablename__ = "credential_stamps"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
