"""Schedules: when a report is sent, in which formats, to whom; and pausing or resuming one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from models import spread
from models.audit import record_change
from models.base import Channel, created_at, json_column, parent, timestamp
from models.db import RedactedText
from models.tenancy import Tenant


class Schedule(SQLModel, table=True):
    """A report on a cron or cadence in its own timezone; the tick claims it by `next_run_at`."""

    # The tick's claim scans (active, next_run_at): its cost follows what is due.
    __table_args__ = (sa.Index("ix_schedule_due", "active", "next_run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id")
    report_id: int = parent("report.id")
    # The effective cron expression; `cadence`/`at_time` keep what was entered.
    cron: str = Field(max_length=120)
    cadence: str | None = Field(default=None, max_length=16)
    at_time: str | None = Field(default=None, max_length=5)
    timezone: str = Field(max_length=64)
    formats: list[str] = json_column(lambda: ["pdf"])
    # Channels this schedule sends on; each uses the schedule's recipients for it, else the tenant's.
    channels: list[str] = json_column(lambda: ["email", "telegram"])
    subject: str | None = Field(default=None, max_length=300)
    params: dict[str, Any] = json_column(dict)
    # "always" or "rows" overrides the report's send_if; None follows the report.
    send_if: str | None = Field(default=None, max_length=16)
    active: bool = Field(default=True)
    next_run_at: datetime | None = timestamp()
    last_fired_at: datetime | None = timestamp()
    last_status: str | None = Field(default=None, max_length=16)
    last_error: str | None = Field(default=None, sa_type=RedactedText)
    # Why herald paused the schedule itself (its runs kept failing), and when; cleared on resume.
    paused_reason: str | None = Field(default=None, sa_type=RedactedText)
    paused_at: datetime | None = timestamp()
    misfire_grace_seconds: int = Field(default=3600)
    # Spreading (models.spread): the window after each slot to run in (None: the tenant's),
    # and the offset `next_run_at` currently carries.
    spread_seconds: int | None = None
    spread_offset_seconds: int = Field(default=0)
    created_by: str | None = Field(default=None, max_length=320)
    created_at: datetime = created_at()
    updated_at: datetime | None = timestamp()
    # Deleting keeps the row (and its runs' history); a deleted schedule is inactive for good.
    deleted_at: datetime | None = timestamp()


class ScheduleRecipient(SQLModel, table=True):
    """An e-mail address or Telegram chat id a schedule sends to (at most 20 per schedule)."""

    __tablename__ = "schedule_recipient"
    __table_args__ = (sa.UniqueConstraint("schedule_id", "channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = parent("schedule.id", index=False)  # the unique index leads with it
    channel: Channel = Field(sa_type=sa.String(16))
    address: str = Field(max_length=320)


def set_active(session: Session, schedule: Schedule, active: bool, now: datetime, actor: str,
               reason: str | None = None) -> None:
    """Pause or resume, recorded as `actor`'s change. Resuming plans from `now` (a paused
    schedule does not catch up) and forgets why it was paused; `reason` says why herald paused
    it itself (`pipeline.autopause`). Nothing changes, and nothing is recorded, when it already is."""
    if active == schedule.active:
        return
    reason = None if active else reason  # a running schedule has no pause reason
    changes: dict[str, list[Any]] = {"paused": [active, not active]}
    if active:
        spread.plan_from(schedule, session.get(Tenant, schedule.tenant_id), now)
    if schedule.paused_reason != reason:
        changes["paused_reason"] = [schedule.paused_reason, reason]
    schedule.paused_reason, schedule.paused_at = reason, now if reason else None
    schedule.active = active
    schedule.updated_at = now
    session.flush()
    record_change(session, schedule.tenant_id, "schedule", schedule.id,
                  "resumed" if active else "paused", actor, changes)
