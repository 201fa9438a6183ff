"""Schedules: create and edit (every field validated by `services.schedule_fields` first, so
nothing is written on error), pause, resume, delete, and a schedule's runs beside its changes.

Each function takes who is asking (an admin user, or the CLI's operator) and checks their
tenant and role first: a viewer reads; an editor or admin changes. Another tenant's schedule,
or a deleted one, reads as "No schedule N.". Every change is recorded in the change audit
with who made it. Functions flush and leave the commit to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import spread
from models.audit import Change, diff, list_changes, record_change
from models.base import Channel
from models.cron import describe_or_none
from models.errors import InvalidInput, NotFound
from models.reports import Report
from models.schedules import Schedule, ScheduleRecipient, set_active
from models.settings import get_settings
from models.tenancy import Tenant
from services.access import Action, Who, owned, require
from services.runs import runs_with_deliveries
from services.schedule_fields import ScheduleFields, validate_schedule
from services.schedule_table import ScheduleRow, one_row


@dataclass(frozen=True)
class ScheduleValues:
    """A schedule's fields as entered (the admin's form, the CLI's options, the API's JSON).

    Timing is either `cadence` (daily, weekly on Mondays, monthly on the 1st) with `time`
    (HH:MM), or `cron`. `params` maps the report's parameter names to values of their
    defaults' types (text is converted: "5" for an int parameter is 5).
    """

    report: str | None
    cadence: str | None = None
    time: str | None = None
    cron: str | None = None
    timezone: str | None = None        # None: the tenant's
    formats: tuple[str, ...] = ("pdf",)
    channels: tuple[str, ...] = ()     # empty: those of the recipients given, else both
    emails: tuple[str, ...] = ()
    chats: tuple[str, ...] = ()
    subject: str | None = None         # {title}, {date}, {period} and {tenant} are filled in
    params: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = False
    send_if: str | None = None         # always or rows; None follows the report's send_if
    spread_seconds: int | None = None  # None follows the tenant's spread


@dataclass(frozen=True)
class ScheduleHistory:
    """A schedule's runs (newest first, each with its deliveries) beside its changes."""

    runs: tuple[dict[str, Any], ...]
    changes: tuple[Change, ...]


def get_schedule(session: Session, who: Who, schedule_id: int,
                 action: Action = Action.READ) -> Schedule:
    """The schedule, if it is one of their tenants' (not deleted) and their role allows `action`."""
    return owned(session, who, Schedule, schedule_id, "schedule", action)


def save_schedule(session: Session, who: Who, tenant_id: int, values: ScheduleValues, *,
                  now: datetime, schedule_id: int | None = None) -> ScheduleRow:
    """Create a schedule in the tenant, or replace the fields of `schedule_id`; an error names
    the field and nothing is written. A new cron or timezone, or a resume, plans the next run
    from `now`. The change is recorded."""
    require(who, tenant_id, Action.EDIT)
    tenant = session.get(Tenant, tenant_id)
    schedule = get_schedule(session, who, schedule_id, Action.EDIT) if schedule_id else None
    if schedule is not None and schedule.tenant_id != tenant_id:
        raise NotFound(f"No schedule {schedule_id}.")
    if not values.report:
        raise InvalidInput("The report is not chosen; choose one of this tenant's reports.")
    fields = validate_schedule(
        session, tenant, values.report, cron_expr=values.cron or None,
        cadence=values.cadence or None, at=values.time or None, timezone=values.timezone or None,
        formats=values.formats, emails=values.emails, chats=values.chats, channels=values.channels,
        subject=values.subject, params=dict(values.params), send_if=values.send_if,
        spread_seconds=values.spread_seconds)
    if schedule is None:
        schedule = _create(session, who, tenant, fields, active=not values.paused, now=now)
    else:
        _update(session, who, schedule, tenant, fields, active=not values.paused, now=now)
    return one_row(session, schedule)


def _create(session: Session, who: Who, tenant: Tenant, fields: ScheduleFields, *, active: bool,
            now: datetime) -> Schedule:
    schedule = Schedule(
        tenant_id=tenant.id, report_id=fields.report.id, cron=fields.cron, cadence=fields.cadence,
        at_time=fields.at, timezone=fields.timezone, formats=fields.formats,
        channels=fields.channels, subject=fields.subject, params=fields.params, active=active,
        send_if=fields.send_if, spread_seconds=fields.spread_seconds,
        misfire_grace_seconds=get_settings().misfire_grace_seconds, created_by=who.actor)
    session.add(schedule)
    session.flush()
    spread.plan_from(schedule, tenant, now)  # the offset hashes the id, known only now
    session.add_all(ScheduleRecipient(schedule_id=schedule.id, channel=channel, address=address)
                    for channel, address in fields.recipients)
    session.flush()
    record_change(session, tenant.id, "schedule", schedule.id, "created", who.actor,
                  diff({}, audited(session, schedule)))
    return schedule


def _update(session: Session, who: Who, schedule: Schedule, tenant: Tenant, fields: ScheduleFields,
            *, active: bool, now: datetime) -> None:
    before = audited(session, schedule)
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
        record_change(session, schedule.tenant_id, "schedule", schedule.id, "updated", who.actor, changes)
    session.flush()


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


def pause(session: Session, who: Who, schedule_id: int, *, now: datetime) -> ScheduleRow:
    """Stop a schedule firing; it keeps its row, runs and settings."""
    schedule = get_schedule(session, who, schedule_id, Action.EDIT)
    set_active(session, schedule, False, now, actor=who.actor)
    return one_row(session, schedule)


def resume(session: Session, who: Who, schedule_id: int, *, now: datetime) -> ScheduleRow:
    """Fire again from the next slot after `now`: the slots missed while paused are not sent."""
    schedule = get_schedule(session, who, schedule_id, Action.EDIT)
    set_active(session, schedule, True, now, actor=who.actor)
    return one_row(session, schedule)


def delete(session: Session, who: Who, schedule_id: int, *, now: datetime) -> None:
    """Delete for good but keep the row and its runs: `deleted_at` set, never active again."""
    schedule = get_schedule(session, who, schedule_id, Action.EDIT)
    changes: dict[str, list[Any]] = {"deleted": [False, True]}
    if schedule.active:
        changes["paused"] = [False, True]
    schedule.deleted_at, schedule.active, schedule.updated_at = now, False, now
    session.flush()
    record_change(session, schedule.tenant_id, "schedule", schedule.id, "deleted", who.actor, changes)


def schedule_history(session: Session, who: Who, schedule_id: int,
                     limit: int = 50) -> ScheduleHistory:
    """The schedule's last `limit` runs and its changes, newest first."""
    schedule = get_schedule(session, who, schedule_id)
    return ScheduleHistory(
        runs=tuple(runs_with_deliveries(session, who, schedule_id=schedule.id, limit=limit)),
        changes=tuple(list_changes(session, schedule.tenant_id, "schedule", schedule.id, limit)))


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


def schedule_recipients(session: Session, schedule_id: int) -> list[ScheduleRecipient]:
    return list(session.exec(
        select(ScheduleRecipient).where(ScheduleRecipient.schedule_id == schedule_id)
        .order_by(ScheduleRecipient.id)
    ))


def schedule_details(session: Session, who: Who, schedule_id: int) -> dict[str, Any]:
    """One schedule as JSON-ready data (`herald schedule add/list --json`)."""
    schedule = get_schedule(session, who, schedule_id)
    return _details(schedule, session.get(Tenant, schedule.tenant_id).slug,
                    session.get(Report, schedule.report_id).slug,
                    [{"channel": r.channel, "address": r.address}
                     for r in schedule_recipients(session, schedule.id)],
                    schedule.formats, schedule.channels, schedule.params)


def list_schedule_details(session: Session, who: Who, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's schedules that are not deleted, by id, as `schedule_details`: in three
    queries whatever their number (`herald schedule list`, the API's list), read as plain rows."""
    require(who, tenant.id, Action.READ)
    live = (Schedule.tenant_id == tenant.id, Schedule.deleted_at.is_(None))
    table = Schedule.__table__
    # The JSON columns as their text, decoded once per distinct value (most schedules share
    # theirs); each schedule gets its own copy.
    found = session.execute(sa.select(*(sa.cast(c, sa.Text).label(c.name) if c.name in _JSON else c
                                        for c in table.c if c.name in _DETAILED))
                            .where(*live).order_by(Schedule.id)).all()
    slugs = dict(session.execute(sa.select(Report.id, Report.slug).where(Report.tenant_id == tenant.id)).all())
    own: dict[int, list[dict[str, str]]] = {}
    for schedule_id, channel, address in session.execute(
            sa.select(ScheduleRecipient.schedule_id, ScheduleRecipient.channel, ScheduleRecipient.address)
            .join(Schedule).where(*live).order_by(ScheduleRecipient.id)):
        own.setdefault(schedule_id, []).append({"channel": channel, "address": address})
    decoded: dict[str, Any] = {}

    def copy(text: str) -> Any:
        if text not in decoded:
            decoded[text] = json.loads(text)
        value = decoded[text]
        return type(value)(value) if isinstance(value, list | dict) else value

    return [_details(row, tenant.slug, slugs[row.report_id], own.get(row.id, []),
                     copy(row.formats), copy(row.channels), copy(row.params)) for row in found]


_JSON = ("formats", "channels", "params")
_DETAILED = ("id", "report_id", "cron", "cadence", "at_time", "timezone", "subject", "send_if",
             "spread_seconds", "active", "next_run_at", "last_fired_at", "last_status",
             "last_error", "paused_reason", "paused_at", *_JSON)


def _details(schedule: Any, tenant: str, report: str, recipients: list[dict[str, str]],
             formats: list[str], channels: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """A schedule (its ORM object or its row, with its JSON columns) as `schedule_details`
    gives it."""
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "id": schedule.id, "tenant": tenant, "report": report, "cron": schedule.cron,
        "cadence": schedule.cadence, "at": schedule.at_time, "timezone": schedule.timezone,
        "description": describe_or_none(schedule.cron),
        "formats": formats, "channels": channels, "subject": schedule.subject,
        "send_if": schedule.send_if, "spread_seconds": schedule.spread_seconds,
        "params": params,
        "active": schedule.active, "next_run_at": iso(schedule.next_run_at),
        "last_fired_at": iso(schedule.last_fired_at), "last_status": schedule.last_status,
        "last_error": schedule.last_error, "paused_reason": schedule.paused_reason,
        "paused_at": iso(schedule.paused_at),
        "recipients": recipients,
    }
