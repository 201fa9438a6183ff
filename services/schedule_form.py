"""What the admin's schedule form starts from: a new schedule's values (daily at 09:00 in the
tenant's timezone), or an edited one's, with the tenant's reports and their typed parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import Session, select

from models.base import Channel
from models.errors import NotFound
from models.reports import Report
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from services.access import Action, Who, require
from services.schedule_fields import param_kind
from services.schedule_table import Recipient, fallback_recipients
from services.schedules import ScheduleValues, get_schedule, schedule_recipients


@dataclass(frozen=True)
class ParamField:
    """A report parameter as the form shows it."""

    name: str
    kind: str       # bool, int, float, str, or any (a null default takes any one value)
    default: Any
    value: Any      # the schedule's value, else the default


@dataclass(frozen=True)
class ReportChoice:
    """A report the schedule may send, with its parameters at their defaults."""

    slug: str
    title: str
    params: tuple[ParamField, ...]


@dataclass(frozen=True)
class ScheduleForm:
    """What the create/edit form starts from."""

    schedule_id: int | None            # None: a new schedule
    values: ScheduleValues
    params: tuple[ParamField, ...]     # the chosen report's parameters, with the values to show
    reports: tuple[ReportChoice, ...]  # the tenant's reports, by slug
    fallback: tuple[Recipient, ...]    # the tenant's recipients, used on a channel naming nobody
    fallback_text: str                 # e.g. "tenant fallback: ops@acme.example"
    tenant_timezone: str
    max_recipients: int


def schedule_form_defaults(session: Session, who: Who, tenant_id: int,
                           schedule_id: int | None = None,
                           report: str | None = None) -> ScheduleForm:
    """The values an edit form starts from (a new schedule's when `schedule_id` is None);
    `report` picks the report of a new schedule, or switches an edited one's."""
    require(who, tenant_id, Action.EDIT)
    tenant = session.get(Tenant, tenant_id)
    schedule = get_schedule(session, who, schedule_id, Action.EDIT) if schedule_id else None
    if schedule is not None and schedule.tenant_id != tenant_id:
        raise NotFound(f"No schedule {schedule_id}.")
    reports = list(session.exec(select(Report).where(Report.tenant_id == tenant_id)
                                .order_by(Report.slug)))
    fallback = fallback_recipients(session, tenant_id)
    if schedule is None:
        values = _new_values(tenant, fallback, report or (reports[0].slug if reports else None))
    else:
        values = _schedule_values(session, schedule, report)
    chosen = next((r for r in reports if r.slug == values.report), None)
    params = _param_fields(chosen, values.params) if chosen else ()
    values = replace(values, params={p.name: p.value for p in params})
    return ScheduleForm(
        schedule_id=schedule_id, values=values, params=params,
        reports=tuple(ReportChoice(r.slug, r.title, _param_fields(r, {})) for r in reports),
        fallback=tuple(fallback), fallback_text=_fallback_text(fallback),
        tenant_timezone=tenant.timezone, max_recipients=get_settings().max_recipients)


def _fallback_text(fallback: Sequence[Recipient]) -> str:
    if not fallback:
        return "no tenant fallback recipients"
    return "tenant fallback: " + ", ".join(r.address for r in fallback)


def _new_values(tenant: Tenant, fallback: Sequence[Recipient], report: str | None) -> ScheduleValues:
    """A new schedule: daily at 09:00 in the tenant's timezone, a PDF, on the channels the
    tenant has fallback recipients on (else e-mail)."""
    channels = tuple(c.value for c in Channel if any(r.channel == c for r in fallback)) or ("email",)
    return ScheduleValues(report=report, cadence="daily", time="09:00", timezone=tenant.timezone,
                          formats=("pdf",), channels=channels)


def _schedule_values(session: Session, schedule: Schedule, report: str | None) -> ScheduleValues:
    own = schedule_recipients(session, schedule.id)
    return ScheduleValues(
        report=report or session.get(Report, schedule.report_id).slug,
        cadence=schedule.cadence, time=schedule.at_time,
        cron=None if schedule.cadence else schedule.cron, timezone=schedule.timezone,
        formats=tuple(schedule.formats), channels=tuple(schedule.channels),
        emails=tuple(r.address for r in own if r.channel == Channel.EMAIL),
        chats=tuple(r.address for r in own if r.channel == Channel.TELEGRAM),
        subject=schedule.subject, params=dict(schedule.params), paused=not schedule.active,
        send_if=schedule.send_if, spread_seconds=schedule.spread_seconds)


def _param_fields(report: Report, values: Mapping[str, Any]) -> tuple[ParamField, ...]:
    defaults = report.definition.get("params", {}) or {}
    return tuple(ParamField(name=name, kind=param_kind(default), default=default,
                            value=values.get(name, default)) for name, default in defaults.items())
