"""Writes to schedules: validate every field (`models.schedule_fields`), then write.

Create and edit share `validate_schedule`; every change is recorded by `models.audit` with
the actor who made it (a user's e-mail, or "cli"). Messages name fields, not CLI flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from models import spread
from models.audit import SYSTEM, diff, record_change
from models.base import Channel
from models.errors import NotFound
from models.reports import Report
from models.schedule_fields import describe_or_none, validate_schedule
from models.schedules import Schedule, ScheduleRecipient
from models.settings import get_settings
from models.tenancy import Tenant


def add_schedule(
    session: Session, tenant: Tenant, report_slug: str, *, now: datetime,
    cron_expr: str | None = None, cadence: str | None = None, at: str | None = None,
    timezone: str | None = None, formats: Sequence[str] = (), emails: Sequence[str] = (),
    chats: Sequence[str] = (), channels: Sequence[str] = (), subject: str | None = None,
    params: dict[str, Any] | None = None, active: bool = True, created_by: str | None = None,
    actor: str = SYSTEM, send_if: str | None = None, spread_seconds: int | None = None,
) -> Schedule:
    """Create a schedule; nothing is written unless every field is valid."""
    fields = validate_schedule(
        session, tenant, report_slug, cron_expr=cron_expr, cadence=cadence, at=at,
        timezone=timezone, formats=formats, emails=emails, chats=chats, channels=channels,
        subject=subject, params=params, send_if=send_if, spread_seconds=spread_seconds)
    schedule = Schedule(
        tenant_id=tenant.id, report_id=fields.report.id, cron=fields.cron, cadence=fields.cadence,
        at_time=fields.at, timezone=fields.timezone, formats=fields.formats,
        channels=fields.channels, subject=fields.subject, params=fields.params, active=active,
        send_if=fields.send_if, spread_seconds=fields.spread_seconds,
        misfire_grace_seconds=get_settings().misfire_grace_seconds,
        created_by=created_by or actor,
    )
    session.add(schedule)
    session.flush()
    spread.plan_from(schedule, tenant, now)  # the offset hashes the id, known only now
    session.add_all(ScheduleRecipient(schedule_id=schedule.id, channel=channel, address=address)
                    for channel, address in fields.recipients)
    session.flush()
    record_change(session, tenant.id, "schedule", schedule.id, "created", actor,
                  diff({}, audited(session, schedule)))
    return schedule


def update_schedule(
    session: Session, schedule: Schedule, *, now: datetime, report_slug: str | None = None,
    cron_expr: str | None = None, cadence: str | None = None, at: str | None = None,
    timezone: str | None = None, formats: Sequence[str] = (), emails: Sequence[str] = (),
    chats: Sequence[str] = (), channels: Sequence[str] = (), subject: str | None = None,
    params: dict[str, Any] | None = None, active: bool | None = None, actor: str = SYSTEM,
    send_if: str | None = None, spread_seconds: int | None = None,
) -> Schedule:
    """Replace a schedule's fields with those given, validated as `add_schedule` validates them.

    Nothing is written unless every field is valid. A new cron or timezone, or a resume,
    plans the next run from `now`; `active=None` keeps the schedule paused or running.
    """
    get_schedule(session, schedule.id)  # a deleted schedule is not edited
    tenant = session.get(Tenant, schedule.tenant_id)
    current = session.get(Report, schedule.report_id)
    fields = validate_schedule(
        session, tenant, report_slug or current.slug, cron_expr=cron_expr, cadence=cadence, at=at,
        timezone=timezone, formats=formats, emails=emails, chats=chats, channels=channels,
        subject=subject, params=params, send_if=send_if, spread_seconds=spread_seconds)
    before = audited(session, schedule)
    active = schedule.active if active is None else active
    replans = (fields.cron, fields.timezone) != (schedule.cron, schedule.timezone)
    schedule.cron, schedule.timezone = fields.cron, fields.timezone
    schedule.spread_seconds = fields.spread_seconds
    if active and (replans or not schedule.active):
        spread.plan_from(schedule, tenant, now)
    else:
        spread.respread(schedule, tenant)
    if active:  # resumed by the form: why it was paused no longer holds
        schedule.paused_reason = schedule.paused_at = None
    schedule.report_id, schedule.cron, schedule.cadence = fields.report.id, fields.cron, fields.cadence
    schedule.at_time, schedule.timezone, schedule.formats = fields.at, fields.timezone, fields.formats
    schedule.channels, schedule.subject, schedule.params = fields.channels, fields.subject, fields.params
    schedule.send_if = fields.send_if
    schedule.active = active
    _replace_recipients(session, schedule, fields.recipients)
    changes = diff(before, audited(session, schedule))
    if changes:
        schedule.updated_at = now
        record_change(session, schedule.tenant_id, "schedule", schedule.id, "updated", actor, changes)
    session.flush()
    return schedule


def _replace_recipients(session: Session, schedule: Schedule,
                        recipients: list[tuple[Channel, str]]) -> None:
    """The schedule's recipient rows made exactly `recipients` (rows kept where unchanged)."""
    existing = {(Channel(r.channel), r.address): r for r in schedule_recipients(session, schedule.id)}
    for pair, row in existing.items():
        if pair not in recipients:
            session.delete(row)
    session.flush()
    session.add_all(ScheduleRecipient(schedule_id=schedule.id, channel=channel, address=address)
                    for channel, address in recipients if (channel, address) not in existing)
    session.flush()


def audited(session: Session, schedule: Schedule) -> dict[str, Any]:
    """The fields a change event records, as JSON values."""
    recipients = schedule_recipients(session, schedule.id)
    return {
        "report": session.get(Report, schedule.report_id).slug, "cron": schedule.cron,
        "timezone": schedule.timezone,
        "recipients": {c.value: [r.address for r in recipients if r.channel == c] for c in Channel},
        "formats": list(schedule.formats), "channels": list(schedule.channels),
        "subject": schedule.subject, "params": dict(schedule.params), "paused": not schedule.active,
        "send_if": schedule.send_if, "spread_seconds": schedule.spread_seconds,
    }


def get_schedule(session: Session, schedule_id: int) -> Schedule:
    """The schedule, unless it does not exist or was deleted."""
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or schedule.deleted_at is not None:
        raise NotFound(f"No schedule {schedule_id}; `herald schedule list --tenant SLUG` lists them.")
    return schedule


def set_active(session: Session, schedule_id: int, active: bool, now: datetime,
               actor: str = SYSTEM, reason: str | None = None) -> Schedule:
    """Pause or resume. Resuming plans from `now`: a paused schedule does not catch up, and
    forgets why it was paused. `reason` says why herald paused it (see `jobs.autopause`)."""
    schedule = get_schedule(session, schedule_id)
    if active == schedule.active:
        return schedule
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
    return schedule


def delete_schedule(session: Session, schedule_id: int, now: datetime, actor: str = SYSTEM) -> Schedule:
    """Delete for good but keep the row and its runs: `deleted_at` set, never active again."""
    schedule = get_schedule(session, schedule_id)
    changes: dict[str, list[Any]] = {"deleted": [False, True]}
    if schedule.active:
        changes["paused"] = [False, True]
    schedule.deleted_at, schedule.active, schedule.updated_at = now, False, now
    session.flush()
    record_change(session, schedule.tenant_id, "schedule", schedule.id, "deleted", actor, changes)
    return schedule


def schedule_recipients(session: Session, schedule_id: int) -> list[ScheduleRecipient]:
    return list(session.exec(
        select(ScheduleRecipient).where(ScheduleRecipient.schedule_id == schedule_id)
        .order_by(ScheduleRecipient.id)
    ))


def list_schedules(session: Session, tenant: Tenant) -> list[Schedule]:
    """The tenant's schedules that are not deleted, by id."""
    return list(session.exec(
        select(Schedule).where(Schedule.tenant_id == tenant.id, Schedule.deleted_at.is_(None))
        .order_by(Schedule.id)
    ))


def schedule_to_dict(session: Session, schedule: Schedule) -> dict[str, Any]:
    report = session.get(Report, schedule.report_id)
    tenant = session.get(Tenant, schedule.tenant_id)
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "id": schedule.id, "tenant": tenant.slug, "report": report.slug, "cron": schedule.cron,
        "cadence": schedule.cadence, "at": schedule.at_time, "timezone": schedule.timezone,
        "description": describe_or_none(schedule.cron),
        "formats": schedule.formats, "channels": schedule.channels, "subject": schedule.subject,
        "send_if": schedule.send_if, "spread_seconds": schedule.spread_seconds,
        "params": schedule.params,
        "active": schedule.active, "next_run_at": iso(schedule.next_run_at),
        "last_fired_at": iso(schedule.last_fired_at), "last_status": schedule.last_status,
        "last_error": schedule.last_error, "paused_reason": schedule.paused_reason,
        "paused_at": iso(schedule.paused_at),
        "recipients": [{"channel": r.channel, "address": r.address}
                       for r in schedule_recipients(session, schedule.id)],
    }
