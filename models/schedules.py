"""Schedules: when a report is sent, in which formats, to whom; pausing or resuming one; and
the "Last 10" strip of its outcomes that its row keeps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from models import spread
from models.audit import record_change
from models.base import Channel, created_at, json_column, parent, timestamp
from models.db import RedactedText
from models.tenancy import Tenant

RECENT = 10  # outcomes in a schedule's "Last 10" strip (`Schedule.recent_runs`)


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
    # The "Last 10" strip: its last runs' outcomes (no tests), oldest first, each
    # [run id, status, slot (ISO)]; written as each run ends and by the tick for missed slots.
    recent_runs: list[list[Any]] = Field(default_factory=list, sa_type=sa.JSON, nullable=False,
                                         sa_column_kwargs={"server_default": "[]"})
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


# --- the "Last 10" strip: written as each run ends (`pipeline.lifecycle.end_run`) and by the
# tick for the slots it misses (`jobs.claim`), read by the schedules table ----------------------

def with_outcome(strip: Iterable[list[Any]], run_id: int, status: str,
                 slot: datetime) -> list[list[Any]]:
    """A new strip: `strip` with run `run_id` ended in `status` for its `slot`. An entry of the
    same run is replaced, not added (a resent run ends again); the entries are ordered by
    (slot, run id) and the last `RECENT` kept. `strip` itself is left as it is."""
    return with_outcomes(strip, [(run_id, status, slot)])


def with_outcomes(strip: Iterable[list[Any]],
                  outcomes: Iterable[tuple[int, str, datetime]]) -> list[list[Any]]:
    """`with_outcome` for several runs of one schedule at once: (run id, status, slot) each."""
    new = {run_id: [run_id, getattr(status, "value", status), _iso(slot)]
           for run_id, status, slot in outcomes}
    merged = [list(entry) for entry in strip if entry[0] not in new] + list(new.values())
    # Parsed, never compared as text: PostgreSQL's backfill writes ".000000+00:00", Python's
    # isoformat leaves out microseconds that are zero.
    merged.sort(key=lambda entry: (datetime.fromisoformat(entry[2]), entry[0]))
    return merged[-RECENT:]


def _iso(slot: datetime) -> str:
    """A slot as a strip keeps it: ISO 8601 in UTC (a naive one is taken as UTC)."""
    return (slot.astimezone(UTC) if slot.tzinfo else slot.replace(tzinfo=UTC)).isoformat()


def fill_recent_runs(connection: sa.Connection) -> None:
    """Write every live schedule's strip from its runs: its last `RECENT` runs (no tests),
    oldest first, each [id, status, slot (ISO)]. What migration 0016 did once (it keeps its own
    copy of these statements, as migrations do), for data written without herald's pipeline:
    the benchmarks' SQL inserts."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(f"""
            UPDATE schedule s SET recent_runs = last.strip
            FROM (SELECT ten.schedule_id,
                         json_agg(json_build_array(ten.id, ten.status,
                                                   to_char(ten.scheduled_for AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
                                  ORDER BY ten.scheduled_for, ten.id) AS strip
                  FROM schedule s2
                  CROSS JOIN LATERAL (
                      SELECT r.id, r.status, r.scheduled_for, r.schedule_id FROM report_run r
                      WHERE r.schedule_id = s2.id AND NOT r.test
                      ORDER BY r.scheduled_for DESC, r.id DESC LIMIT {RECENT}) ten
                  WHERE s2.deleted_at IS NULL
                  GROUP BY ten.schedule_id) last
            WHERE s.id = last.schedule_id"""))
        return
    import json

    rows = connection.execute(sa.text(f"""
        SELECT schedule_id, id, status, scheduled_for FROM (
            SELECT r.schedule_id, r.id, r.status, r.scheduled_for,
                   ROW_NUMBER() OVER (PARTITION BY r.schedule_id
                                      ORDER BY r.scheduled_for DESC, r.id DESC) AS n
            FROM report_run r JOIN schedule s ON s.id = r.schedule_id
            WHERE NOT r.test AND s.deleted_at IS NULL) ranked
        WHERE n <= {RECENT} ORDER BY schedule_id, scheduled_for, id""")).all()
    strips: dict[int, list] = {}
    for schedule_id, run_id, status, slot in rows:
        if isinstance(slot, str):
            slot = datetime.fromisoformat(slot)
        strips.setdefault(schedule_id, []).append([run_id, status, _iso(slot)])
    for schedule_id, strip in strips.items():
        connection.execute(sa.text("UPDATE schedule SET recent_runs = :strip WHERE id = :id"),
                           {"strip": json.dumps(strip), "id": schedule_id})
