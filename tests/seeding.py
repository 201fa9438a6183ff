"""Setting up the tests' tenants, reports, users and schedules through the services, as
herald's operator would (`herald tenant add`, `report add`, `user add`, `schedule add`): the
same validation and change audit as every face."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models.definition import ReportDefinition
from models.reports import Report
from models.schedules import Schedule
from models.tenancy import Tenant
from services import members, reports, schedules, tenants
from services.access import OPERATOR


def add_schedule(session: Session, tenant: Tenant, report: str, *, now: datetime,
                 cron_expr: str | None = None, cadence: str | None = None, at: str | None = None,
                 timezone: str | None = None, formats: Sequence[str] = ("pdf",),
                 emails: Sequence[str] = (), chats: Sequence[str] = (),
                 channels: Sequence[str] = (), subject: str | None = None,
                 params: dict[str, Any] | None = None, active: bool = True,
                 send_if: str | None = None, spread_seconds: int | None = None) -> Schedule:
    """A schedule made by `services.schedules.save_schedule`, as its row."""
    row = schedules.save_schedule(session, OPERATOR, tenant.id, schedules.ScheduleValues(
        report=report, cron=cron_expr, cadence=cadence, time=at, timezone=timezone,
        formats=tuple(formats), emails=tuple(emails), chats=tuple(chats), channels=tuple(channels),
        subject=subject, params=params or {}, paused=not active, send_if=send_if,
        spread_seconds=spread_seconds), now=now)
    return session.get(Schedule, row.id)


def add_tenant(session: Session, slug: str, name: str, timezone: str = "UTC",
               datasource_url: str | None = None, emails: Sequence[str] = (),
               chats: Sequence[str] = ()) -> Tenant:
    return tenants.add_tenant(session, OPERATOR, slug, name, timezone, datasource_url, emails, chats)


def get_tenant(session: Session, slug: str) -> Tenant:
    return tenants.get_tenant(session, OPERATOR, slug)


def save_report(session: Session, tenant: Tenant, definition: ReportDefinition) -> tuple[Report, bool]:
    return reports.save_report(session, OPERATOR, tenant, definition)


def add_user(session: Session, email: str, tenant: Tenant, role: str,
             password: str | None = None) -> members.Grant:
    """`herald user add`: a user (created if new) with a role in the tenant."""
    return members.grant(session, OPERATOR, tenant.id, email, role, password)


def set_spread(session: Session, tenant: Tenant, seconds: int) -> int:
    return tenants.set_spread(session, OPERATOR, tenant, seconds)


def grant_refresh(session: Session, tenant: Tenant, url: str | None) -> None:
    tenants.grant_refresh(session, OPERATOR, tenant, url)


def count_rows(session: Session, model: type) -> int:
    return session.exec(select(sa.func.count()).select_from(model)).one()


def manual_run(schedule_id: int) -> int:
    """A manual run of the schedule, made by send now and left queued (nothing dispatched): the
    test runs it as it likes."""
    from models.db import session_scope, utcnow
    from services import runs

    with session_scope() as session:
        return runs.send_now(session, OPERATOR, schedule_id, now=utcnow(), dispatch=lambda _: None).run_id
