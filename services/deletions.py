"""Deleting a report or a whole tenant, and what each deletion takes with it, so a face can
name it and ask first. (A schedule's own delete is `services.schedules.delete`: the schedule
ends for good and its runs stay in the history.)

A report goes with its schedules, only when asked to (else it is refused while it has any),
and every run of them; a tenant with all it holds: reports, schedules and their runs,
fallback recipients, API tokens, memberships (the users' accounts stay, with their other
tenants) and its change audit. The rows go by their foreign keys' ON DELETE CASCADE
(`models.base.parent`), in the caller's transaction. While a worker is running one of the
runs that would go, the deletion is refused: it would pull the run from under the worker.

A report's deletion is recorded among the tenant's changes, and so is each schedule that goes
with it; a tenant's own audit goes with the tenant, so its deletion is logged instead
(`herald.audit`). Functions flush and leave the commit to the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session

from models.audit import record_change
from models.errors import InvalidInput, PermissionDenied
from models.reports import Report
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.tenancy import Membership, Tenant, TenantRecipient
from models.tokens import ApiToken
from services import reports, schedules, tenants
from services.access import Action, Operator, Who, require

log = logging.getLogger("herald.audit")


@dataclass(frozen=True)
class WhatGoes:
    """What a deletion takes with it (zero: none of that kind)."""

    schedules: tuple[int, ...] = ()  # live schedules (not deleted before), by id
    runs: int = 0                    # runs of every schedule that goes, deleted ones' too
    running: int = 0                 # of those, held by a worker now
    reports: int = 0
    members: int = 0
    members_alone: int = 0           # members of no other tenant: their accounts stay, with none
    tokens: int = 0                  # API tokens, revoked ones too
    recipients: int = 0              # tenant-wide fallback recipients

    @property
    def anything(self) -> bool:
        """Whether anything besides the object itself goes."""
        return any((self.schedules, self.runs, self.reports, self.members, self.tokens,
                    self.recipients))


def what_goes_with_schedule(session: Session, who: Who, schedule_id: int) -> WhatGoes:
    """The schedule's runs (tests too): they stay in the history when it is deleted."""
    schedule = schedules.get_schedule(session, who, schedule_id, Action.EDIT)
    return WhatGoes(runs=_count_runs(session, ReportRun.schedule_id == schedule.id))


def what_goes_with_report(session: Session, who: Who, tenant: Tenant, slug: str) -> WhatGoes:
    """The report's live schedules and the runs of all its schedules."""
    require(who, tenant.id, Action.EDIT)
    return _report_goes(session, reports.get_report(session, who, tenant, slug))


def delete_report(session: Session, who: Who, tenant: Tenant, slug: str, *, with_schedules: bool,
                  now: datetime) -> WhatGoes:
    """Delete the tenant's report `slug`, and with `with_schedules` its schedules and all
    their runs (each schedule recorded as deleted first, then the report). Without it, a
    report that still has schedules is refused, and nothing changes."""
    require(who, tenant.id, Action.EDIT)
    report = reports.get_report(session, who, tenant, slug)
    goes = _report_goes(session, report)
    if goes.schedules and not with_schedules:
        raise InvalidInput(f"Report {slug!r} has {schedules_text(goes.schedules)}; delete "
                           f"{'it' if len(goes.schedules) == 1 else 'them'} first, or delete the "
                           f"report together with its schedules.")
    _refuse_running(goes, f"report {slug!r}")
    for schedule_id in goes.schedules:
        schedules.delete(session, who, schedule_id, now=now)
    record_change(session, tenant.id, "report", report.id, "deleted", who.actor,
                  {"title": [report.title, None], "schedules": [list(goes.schedules), None],
                   "runs": [goes.runs, None]})
    session.delete(report)
    session.flush()
    return goes


def what_goes_with_tenant(session: Session, who: Who, slug: str) -> WhatGoes:
    """Everything the tenant holds, counted."""
    return _tenant_goes(session, _deletable_tenant(session, who, slug))


def delete_tenant(session: Session, who: Who, slug: str) -> WhatGoes:
    """Delete the tenant and all it holds (herald's operator alone); its users keep their
    accounts and their other tenants. Logged on `herald.audit`, as its change audit goes too."""
    tenant = _deletable_tenant(session, who, slug)
    goes = _tenant_goes(session, tenant)
    _refuse_running(goes, f"tenant {slug!r}")
    session.delete(tenant)
    session.flush()
    log.info("tenant %s (id %s) deleted by %s with %s reports, %s schedules, %s runs, %s members, "
             "%s API tokens", slug, tenant.id, who.actor, goes.reports, len(goes.schedules), goes.runs,
             goes.members, goes.tokens,
             extra={"tenant": slug, "tenant_id": tenant.id, "actor": who.actor, "action": "deleted"})
    return goes


def _deletable_tenant(session: Session, who: Who, slug: str) -> Tenant:
    if not isinstance(who, Operator):
        raise PermissionDenied("Tenants are deleted by herald's operator; run `herald tenant delete`.")
    return tenants.get_tenant(session, who, slug, Action.MANAGE)


def _report_goes(session: Session, report: Report) -> WhatGoes:
    of_report = sa.select(Schedule.id).where(Schedule.report_id == report.id)
    return WhatGoes(
        schedules=tuple(session.execute(of_report.where(Schedule.deleted_at.is_(None))
                                        .order_by(Schedule.id)).scalars()),
        runs=_count_runs(session, ReportRun.schedule_id.in_(of_report)),
        running=_count_runs(session, ReportRun.schedule_id.in_(of_report), running=True))


def _tenant_goes(session: Session, tenant: Tenant) -> WhatGoes:
    def count(model: type, *where: sa.ColumnElement[bool]) -> int:
        return session.execute(sa.select(sa.func.count()).select_from(model)
                               .where(model.tenant_id == tenant.id, *where)).scalar_one()

    other = aliased(Membership)
    elsewhere = sa.exists().where(other.user_id == Membership.user_id, other.tenant_id != tenant.id)
    return WhatGoes(
        schedules=tuple(session.execute(
            sa.select(Schedule.id).where(Schedule.tenant_id == tenant.id, Schedule.deleted_at.is_(None))
            .order_by(Schedule.id)).scalars()),
        runs=_count_runs(session, ReportRun.tenant_id == tenant.id),
        running=_count_runs(session, ReportRun.tenant_id == tenant.id, running=True),
        reports=count(Report), members=count(Membership), members_alone=count(Membership, ~elsewhere),
        tokens=count(ApiToken), recipients=count(TenantRecipient))


def _count_runs(session: Session, where: sa.ColumnElement[bool], running: bool = False) -> int:
    query = sa.select(sa.func.count()).select_from(ReportRun).where(where)
    if running:
        query = query.where(ReportRun.status == RunStatus.RUNNING)
    return session.execute(query).scalar_one()


def _refuse_running(goes: WhatGoes, what: str) -> None:
    if goes.running:
        runs = "a run" if goes.running == 1 else f"{goes.running} runs"
        raise InvalidInput(f"A worker is running {runs} of {what} now; delete it once "
                           f"{'it has' if goes.running == 1 else 'they have'} finished.")


def schedules_text(ids: tuple[int, ...]) -> str:
    """'schedule 3', '2 schedules (3, 7)'; past ten, only how many."""
    if len(ids) == 1:
        return f"schedule {ids[0]}"
    return f"{len(ids)} schedules" + (f" ({', '.join(map(str, ids))})" if len(ids) <= 10 else "")
