"""Tables of the front doors beside the sms-gate.app API: the Twilio-compatible one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from simgate.store.models import Base, BigId, UtcDateTime, utcnow


class TwilioMessage(Base):
    """A message sent through the Twilio-compatible API: the account it was sent as,
    the `From` asked for, and where its status callbacks go. The AuthToken that signs
    them is kept encrypted with the server's secret (`secret`)."""

    __tablename__ = "twilio_messages"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_sid: Mapped[str] = mapped_column(String(128))
    sender: Mapped[str | None] = mapped_column(String(32))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TwilioCallback(Base):
    """The outbox of status callbacks: written in the transaction of the state change,
    so a callback is never lost between the change and its POST."""

    __tablename__ = "twilio_callbacks"
    __table_args__ = (Index("ix_twilio_callbacks_due", "status", "next_attempt_at"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    ext_id: Mapped[str] = mapped_column(String(36))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
