"""Writes to schedules: validate cron, timezone, formats and recipients, then write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from models import cron
from models.base import Channel, Format
from models.catalog import get_report
from models.db import utcnow
from models.errors import InvalidInput, NotFound
from models.recipients import normalise_recipients
from models.reports import Report
from models.schedules import Schedule, ScheduleRecipient
from models.settings import get_settings
from models.tenancy import Tenant
from models.text import require_one_line


def resolve_cron(expr: str | None, cadence: str | None, at: str | None) -> str:
    """The effective cron from either `--cron` or `--cadence` with `--at`."""
    if expr and cadence:
        raise InvalidInput("Give either --cron or --cadence with --at, not both.")
    if cadence:
        if not at:
            raise InvalidInput(f"--cadence {cadence} needs --at HH:MM, e.g. --at 09:00.")
        return cron.cadence_to_cron(cadence, at)
    if at:
        raise InvalidInput("--at goes with --cadence daily|weekly|monthly; with --cron put the time in the expression.")
    if not expr:
        raise InvalidInput("A schedule needs --cron EXPR or --cadence daily|weekly|monthly --at HH:MM.")
    return cron.validate_cron(expr)


def parse_formats(formats: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(f.lower() for f in formats)) or [Format.PDF.value]
    for name in chosen:
        if name not in {f.value for f in Format}:
            raise InvalidInput(f"Unknown format {name!r}; use pdf, csv or both.")
    return chosen


def parse_channels(channels: Sequence[str], recipients: Sequence[tuple[Channel, str]]) -> list[str]:
    """The channels a schedule sends on: as given; else those its recipients are on; else all
    (each then uses the tenant's fallback recipients)."""
    known = {c.value for c in Channel}
    for name in channels:
        if name.lower() not in known:
            raise InvalidInput(f"Unknown channel {name!r}; use email, telegram or both.")
    chosen = [c.lower() for c in channels] or [c.value for c, _ in recipients] or sorted(known)
    stray = sorted({c.value for c, _ in recipients} - set(chosen))
    if stray:
        raise InvalidInput(f"{stray[0]} recipients are given but --channel leaves {stray[0]} out; "
                           f"add --channel {stray[0]} or drop those recipients.")
    return list(dict.fromkeys(chosen))


def add_schedule(
    session: Session, tenant: Tenant, report_slug: str, *, now: datetime,
    cron_expr: str | None = None, cadence: str | None = None, at: str | None = None,
    timezone: str | None = None, formats: Sequence[str] = (), emails: Sequence[str] = (),
    chats: Sequence[str] = (), channels: Sequence[str] = (), subject: str | None = None,
    params: dict[str, Any] | None = None, active: bool = True, created_by: str | None = None,
) -> Schedule:
    """Create a schedule; nothing is written unless every field is valid."""
    report = get_report(session, tenant, report_slug)
    expr = resolve_cron(cron_expr, cadence, at)
    timezone = timezone or tenant.timezone
    cron.parse_timezone(timezone)
    chosen = parse_formats(formats)
    recipients = normalise_recipients(emails, chats, get_settings().max_recipients)
    chosen_channels = parse_channels(channels, recipients)
    require_one_line(subject, "subject")
    unknown = sorted(set(params or {}) - set(report.definition.get("params", {})))
    if unknown:
        raise InvalidInput(f"Report {report.slug!r} has no parameter {unknown[0]!r}; "
                           f"it takes: {', '.join(report.definition.get('params', {})) or 'none'}.")
    schedule = Schedule(
        tenant_id=tenant.id, report_id=report.id, cron=expr, cadence=cadence,
        at_time=at if cadence else None, timezone=timezone, formats=chosen, channels=chosen_channels,
        subject=subject, params=params or {}, active=active,
        next_run_at=cron.next_fire(expr, timezone, now),
        misfire_grace_seconds=get_settings().misfire_grace_seconds, created_by=created_by,
    )
    session.add(schedule)
    session.flush()
    session.add_all(ScheduleRecipient(schedule_id=schedule.id, channel=channel, address=address)
                    for channel, address in recipients)
    session.flush()
    return schedule


def get_schedule(session: Session, schedule_id: int) -> Schedule:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"No schedule {schedule_id}; `herald schedule list --tenant SLUG` lists them.")
    return schedule


def set_active(session: Session, schedule_id: int, active: bool, now: datetime) -> Schedule:
    """Pause or resume. Resuming plans from `now`: a paused schedule does not catch up."""
    schedule = get_schedule(session, schedule_id)
    if active and not schedule.active:
        schedule.next_run_at = cron.next_fire(schedule.cron, schedule.timezone, now)
    schedule.active = active
    schedule.updated_at = utcnow()
    session.flush()
    return schedule


def schedule_recipients(session: Session, schedule_id: int) -> list[ScheduleRecipient]:
    return list(session.exec(
        select(ScheduleRecipient).where(ScheduleRecipient.schedule_id == schedule_id)
        .order_by(ScheduleRecipient.id)
    ))


def list_schedules(session: Session, tenant: Tenant) -> list[Schedule]:
    return list(session.exec(
        select(Schedule).where(Schedule.tenant_id == tenant.id).order_by(Schedule.id)
    ))


def schedule_to_dict(session: Session, schedule: Schedule) -> dict[str, Any]:
    report = session.get(Report, schedule.report_id)
    tenant = session.get(Tenant, schedule.tenant_id)
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "id": schedule.id, "tenant": tenant.slug, "report": report.slug, "cron": schedule.cron,
        "cadence": schedule.cadence, "at": schedule.at_time, "timezone": schedule.timezone,
        "description": cron.describe(schedule.cron) if _parses(schedule.cron) else None,
        "formats": schedule.formats, "channels": schedule.channels, "subject": schedule.subject,
        "params": schedule.params,
        "active": schedule.active, "next_run_at": iso(schedule.next_run_at),
        "last_fired_at": iso(schedule.last_fired_at), "last_status": schedule.last_status,
        "last_error": schedule.last_error,
        "recipients": [{"channel": r.channel, "address": r.address}
                       for r in schedule_recipients(session, schedule.id)],
    }


def _parses(expr: str) -> bool:
    try:
        cron.validate_cron(expr)
        return True
    except InvalidInput:
        return False
