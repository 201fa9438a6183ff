"""The failures page's data: a tenant's failed deliveries over a window, grouped by cause, and
the two things an editor does about a group: pause its schedules, send its runs again.

The database groups the failed deliveries by (error, channel); the distinct errors are then
merged here when they differ only by a recipient's address or the numbers of an id
(`cause_of`), so "550 5.1.1 <a@x>: user unknown" and "550 5.1.1 <b@x>: user unknown" are one
cause. Every function checks the tenant and role of who is asking first: viewers read the groups,
editors and admins act on them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models.errors import HeraldError, NotFound
from models.reports import Report
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule, set_active
from services import runs
from services.access import Action, Who, require
from services.failure_records import FailureGroup, PauseResult, RunResend, ScheduleRef

RECIPIENTS_SHOWN = 5
NO_ERROR = "no error was recorded"
OPEN_RUNS = (RunStatus.PARTIAL, RunStatus.FAILED)

# An address, bracketed or not: "<a@x.example>", "a@x.example".
_ADDRESS = re.compile(r"<?[^\s<>@:;,()\"']+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>?")
# A word of five or more characters holding two digits or more: a chat id, a queue id, a
# message number, a date. SMTP codes (550, 5.1.1) and names such as SMTPUTF8 stay.
_ID = re.compile(r"(?<![\w.])-?(?=(?:[A-Za-z_-]*\d){2})[\w-]{5,}(?![\w])")


def cause_of(error: str | None) -> str:
    """The error with what varies per recipient taken out: addresses read `<address>` and ids
    `<id>`; the same cause for every recipient it hit."""
    if not error or not error.strip():
        return NO_ERROR
    text = _ADDRESS.sub("<address>", " ".join(error.split()))
    return _ID.sub("<id>", text)


def failure_groups(session: Session, who: Who, tenant_id: int, *, since: datetime,
                   until: datetime) -> list[FailureGroup]:
    """The tenant's deliveries that failed in [since, until), grouped by channel and cause,
    the largest group first. One query for the groups, then a few per group."""
    require(who, tenant_id, Action.READ)
    groups = []
    for merged in _merged(session, tenant_id, since, until):
        where = _in_group(tenant_id, since, until, merged)
        schedules = session.execute(
            sa.select(Schedule.id, Report.title, Schedule.active, Schedule.deleted_at).distinct()
            .select_from(Delivery).join(ReportRun, ReportRun.id == Delivery.run_id)
            .join(Schedule, Schedule.id == ReportRun.schedule_id)
            .join(Report, Report.id == Schedule.report_id)
            .where(*where).order_by(Schedule.id)).all()
        recipients = session.execute(
            sa.select(Delivery.recipient).distinct()
            .join(ReportRun, ReportRun.id == Delivery.run_id).where(*where).order_by(Delivery.recipient).limit(RECIPIENTS_SHOWN + 1)).scalars().all()
        counted = len(recipients)
        if counted > RECIPIENTS_SHOWN:
            counted = session.execute(
                sa.select(sa.func.count(sa.distinct(Delivery.recipient)))
                .join(ReportRun, ReportRun.id == Delivery.run_id).where(*where)).scalar_one()
        open_runs = session.execute(
            sa.select(sa.func.count(sa.distinct(Delivery.run_id)))
            .join(ReportRun, ReportRun.id == Delivery.run_id)
            .where(*where, ReportRun.status.in_(OPEN_RUNS))).scalar_one()
        groups.append(FailureGroup(
            key=merged.key, channel=merged.channel, cause=merged.cause, count=merged.count,
            last_seen=merged.last_seen, example=merged.errors[0] or NO_ERROR,
            schedules=tuple(ScheduleRef(i, title, not active, deleted is not None)
                            for i, title, active, deleted in schedules),
            recipients=tuple(recipients[:RECIPIENTS_SHOWN]), recipient_count=counted,
            open_runs=open_runs))
    return groups


def pause_affected(session: Session, who: Who, tenant_id: int, key: str, *,
                   since: datetime, until: datetime, now: datetime) -> PauseResult:
    """Pause every live, active schedule behind the group (each pause recorded as theirs);
    the ones already paused or deleted are left as they are. Flushes; the caller commits."""
    require(who, tenant_id, Action.EDIT)
    merged = _find(session, tenant_id, since, until, key)
    schedules = session.execute(
        sa.select(Schedule.id, Schedule.active, Schedule.deleted_at).distinct()
        .select_from(Delivery).join(ReportRun, ReportRun.id == Delivery.run_id)
        .join(Schedule, Schedule.id == ReportRun.schedule_id)
        .where(*_in_group(tenant_id, since, until, merged)).order_by(Schedule.id)).all()
    paused, already, deleted = [], [], []
    for schedule_id, active, deleted_at in schedules:
        if deleted_at is not None:
            deleted.append(schedule_id)
        elif not active:
            already.append(schedule_id)
        else:
            set_active(session, session.get(Schedule, schedule_id), False, now, actor=who.actor)
            paused.append(schedule_id)
    return PauseResult(tuple(paused), tuple(already), tuple(deleted))


def resend_group(session: Session, who: Who, tenant_id: int, key: str, *,
                 since: datetime, until: datetime, now: datetime,
                 dispatch: runs.Dispatch | None = None) -> tuple[RunResend, ...]:
    """Send the failed deliveries of each of the group's runs that is still partial or failed
    again (`services.runs.resend_failed`, which commits each); a refused run says why and the
    others go on."""
    require(who, tenant_id, Action.EDIT)
    merged = _find(session, tenant_id, since, until, key)
    run_ids = session.execute(
        sa.select(Delivery.run_id).distinct().join(ReportRun, ReportRun.id == Delivery.run_id)
        .where(*_in_group(tenant_id, since, until, merged), ReportRun.status.in_(OPEN_RUNS))
        .order_by(Delivery.run_id)).scalars().all()
    done = []
    for run_id in run_ids:
        try:
            result = runs.resend_failed(session, who, run_id, now=now, dispatch=dispatch)
        except HeraldError as exc:
            session.rollback()   # nothing of a refused resend is kept (its row lock goes too)
            done.append(RunResend(run_id, None, str(exc)))
        else:
            done.append(RunResend(run_id, result, None))
    return tuple(done)


@dataclass
class _Merged:
    """The (error, channel) groups of the database that share a cause."""

    key: str
    channel: str
    cause: str
    count: int = 0
    last_seen: datetime | None = None
    errors: list[str | None] = field(default_factory=list)


def _failed_at() -> Any:
    return sa.func.coalesce(Delivery.finished_at, Delivery.created_at)


def _window(tenant_id: int, since: datetime, until: datetime) -> list[Any]:
    return [ReportRun.tenant_id == tenant_id, Delivery.status == DeliveryStatus.FAILED,
            _failed_at() >= since, _failed_at() < until]


def _merged(session: Session, tenant_id: int, since: datetime, until: datetime) -> list[_Merged]:
    """The window's failures counted by the database per (error, channel), merged by cause."""
    counted = session.execute(
        sa.select(Delivery.error, Delivery.channel, sa.func.count(), sa.func.max(_failed_at()))
        .join(ReportRun, ReportRun.id == Delivery.run_id).where(*_window(tenant_id, since, until))
        .group_by(Delivery.error, Delivery.channel)).all()
    groups: dict[tuple[str, str], _Merged] = {}
    for error, channel, count, last in sorted(counted, key=lambda r: (-r[2], r[0] or "")):
        cause = cause_of(error)
        digest = hashlib.sha256(f"{channel}\n{cause}".encode()).hexdigest()[:12]
        group = groups.setdefault((channel, cause), _Merged(f"{channel}-{digest}", channel, cause))
        group.count += count
        group.last_seen = last if group.last_seen is None else max(group.last_seen, last)
        group.errors.append(error)
    return sorted(groups.values(), key=lambda g: (-g.count, -g.last_seen.timestamp(), g.cause))


def _find(session: Session, tenant_id: int, since: datetime, until: datetime, key: str) -> _Merged:
    found = next((g for g in _merged(session, tenant_id, since, until) if g.key == key), None)
    if found is None:
        raise NotFound("That group of failures is no longer in this window (sent again, or "
                       "older than its start); reload the page to see the current groups.")
    return found


def _in_group(tenant_id: int, since: datetime, until: datetime, group: _Merged) -> list[Any]:
    """The WHERE clause of the group's failed deliveries."""
    errors = [e for e in group.errors if e is not None]
    same = [Delivery.error.in_(errors)] if errors else []
    if len(errors) < len(group.errors):
        same.append(Delivery.error.is_(None))
    return [*_window(tenant_id, since, until), Delivery.channel == group.channel, sa.or_(*same)]
