"""Run history: a tenant's runs (filtered, in keyset pages, so the thousandth page costs what
the first does), outcomes per local day, one run's story and its documents.

Each function takes who is asking and checks their tenant first. Another tenant's run reads
as "No run N.". Sending a run's failed deliveries again is `services.runs.resend_failed`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from models.artifacts import QUERY_RESULT, read_content, run_artifact
from models.db import utcnow
from models.errors import InvalidInput, NotFound
from models.reports import Report
from models.runs import Artifact, Delivery, DeliveryStatus, ReportRun
from models.schedules import Schedule
from models.tenancy import Tenant
from models.unsubscribe import ScheduleOptOut
from services.access import Action, Who, owned, require
from services.history_records import (
    DayOutcome,
    DeliveryStory,
    DocumentContent,
    DocumentStory,
    FilterChoices,
    RunCursor,
    RunFilters,
    RunPage,
    RunRow,
    RunStory,
)

KINDS = ("scheduled", "manual", "test")


def _delivery_count(status: DeliveryStatus) -> Any:
    return (sa.select(sa.func.count()).where(Delivery.run_id == ReportRun.id,
                                             Delivery.status == status)
            .scalar_subquery().label(status.value))


# The runs page's columns and joins, built once (building them cost more than running them).
_RUNS_PAGE = (sa.select(ReportRun.id, ReportRun.schedule_id, Report.title, ReportRun.scheduled_for,
                        ReportRun.status, ReportRun.manual, ReportRun.test, ReportRun.attempts,
                        ReportRun.error, _delivery_count(DeliveryStatus.SENT),
                        _delivery_count(DeliveryStatus.FAILED),
                        _delivery_count(DeliveryStatus.PENDING))
              .join(Schedule, Schedule.id == ReportRun.schedule_id)
              .join(Report, Report.id == Schedule.report_id))


def runs_page(session: Session, who: Who, tenant_id: int, filters: RunFilters, *,
              after: RunCursor | None = None, limit: int = 50) -> RunPage:
    """The tenant's filtered runs newest first, `limit` at a time: pass the page's
    `next_cursor` as `after` for the next one. One query per page: each run's deliveries are
    counted by status beside it (an index probe each, for the page's runs only)."""
    require(who, tenant_id, Action.READ)
    query = (_RUNS_PAGE.where(*_conditions(tenant_id, filters))
             .order_by(ReportRun.scheduled_for.desc(), ReportRun.id.desc()).limit(limit + 1))
    if after is not None:
        query = query.where(sa.tuple_(ReportRun.scheduled_for, ReportRun.id)
                            < sa.tuple_(_slot(after.scheduled_for), sa.literal(after.id)))
    found = session.execute(query).all()
    page, more = found[:limit], len(found) > limit
    rows = tuple(RunRow(
        id=r.id, schedule_id=r.schedule_id, report_title=r.title, scheduled_for=r.scheduled_for,
        status=str(r.status), manual=r.manual, test=r.test, attempts=r.attempts,
        error=_first_line(r.error), sent=r.sent, failed=r.failed, pending=r.pending) for r in page)
    last = rows[-1] if more else None
    return RunPage(rows, RunCursor(last.scheduled_for, last.id) if last else None)


def outcomes_per_day(session: Session, who: Who, tenant_id: int,
                     filters: RunFilters) -> list[DayOutcome]:
    """The filtered runs counted per local day (the tenant's timezone) and status, by day
    then status; counted by the database (GROUP BY), not here."""
    require(who, tenant_id, Action.READ)
    zone = ZoneInfo(session.get(Tenant, tenant_id).timezone)
    conditions = _conditions(tenant_id, filters)
    if session.get_bind().dialect.name == "postgresql":
        day = sa.cast(sa.func.timezone(zone.key, ReportRun.scheduled_for), sa.Date)
    else:
        bounds = session.execute(sa.select(sa.func.min(ReportRun.scheduled_for),
                                           sa.func.max(ReportRun.scheduled_for))
                                 .where(*conditions)).one()
        if bounds[0] is None:
            return []
        day = sa.func.date(ReportRun.scheduled_for, _sqlite_offset(zone, *map(_aware, bounds)))
    day = day.label("day")
    counted = session.execute(sa.select(day, ReportRun.status, sa.func.count())
                              .where(*conditions).group_by(day, ReportRun.status)
                              .order_by(day, ReportRun.status)).all()
    return [DayOutcome(d if isinstance(d, date) else date.fromisoformat(d), str(s), n)
            for d, s, n in counted]


def run_story(session: Session, who: Who, run_id: int, *,
              now: datetime | None = None) -> RunStory:
    """One run: its slot and times, each delivery, and its documents (with their expiry)."""
    run = owned(session, who, ReportRun, run_id, "run", Action.READ)
    now = now or utcnow()
    title = session.execute(sa.select(Report.title).join(Schedule, Schedule.report_id == Report.id)
                            .where(Schedule.id == run.schedule_id)).scalar_one()
    deliveries = session.exec(select(Delivery).where(Delivery.run_id == run.id).order_by(Delivery.id))
    unsubscribed = {(str(o.channel), o.address): o.created_at for o in session.exec(
        select(ScheduleOptOut).where(ScheduleOptOut.schedule_id == run.schedule_id))}
    documents = session.exec(select(Artifact).where(Artifact.run_id == run.id,
                                                    Artifact.kind != QUERY_RESULT)
                             .order_by(Artifact.id))
    return RunStory(
        id=run.id, schedule_id=run.schedule_id, report_title=title,
        scheduled_for=run.scheduled_for, status=str(run.status), queued_at=run.queued_at,
        started_at=run.started_at, finished_at=run.finished_at, attempts=run.attempts,
        error=run.error, manual=run.manual, test=run.test, requested_by=run.requested_by,
        deliveries=tuple(DeliveryStory(
            channel=str(d.channel), recipient=d.recipient, status=str(d.status),
            attempts=d.attempts, duration_ms=d.duration_ms, message_id=d.provider_message_id,
            error=d.error, unsubscribed_at=unsubscribed.get((str(d.channel), d.recipient)))
            for d in deliveries),
        documents=tuple(DocumentStory(
            kind=a.kind, filename=a.filename, media_type=a.media_type, size=a.size,
            expires_at=a.expires_at, expired=_expired(a.expires_at, now)) for a in documents))


def document(session: Session, who: Who, run_id: int, kind: str, *,
             now: datetime) -> DocumentContent:
    """The bytes of one of the run's documents (pdf, csv or xlsx) while it is retained."""
    owned(session, who, ReportRun, run_id, "run", Action.READ)
    artifact = run_artifact(session, run_id, kind) if kind != QUERY_RESULT else None
    if artifact is None:
        raise NotFound(f"Run {run_id} has no {kind} document; its story lists the ones it has.")
    expired = _expired(artifact.expires_at, now)
    if expired:
        raise InvalidInput(f"The {kind} of run {run_id} {expired}; send the schedule now to make "
                           f"a new one.")
    return DocumentContent(filename=artifact.filename, media_type=artifact.media_type,
                           content=read_content(session, artifact))


def filter_choices(session: Session, who: Who, tenant_id: int) -> FilterChoices:
    """The tenant's schedules (deleted ones too: their runs stay) and reports, for the filters."""
    require(who, tenant_id, Action.READ)
    schedules = session.execute(
        sa.select(Schedule.id, Report.title, Schedule.deleted_at)
        .join(Report, Report.id == Schedule.report_id)
        .where(Schedule.tenant_id == tenant_id).order_by(Schedule.id)).all()
    reports = session.execute(sa.select(Report.slug, Report.title)
                              .where(Report.tenant_id == tenant_id).order_by(Report.title)).all()
    return FilterChoices(
        schedules=tuple((i, f"#{i} {title}" + (" (deleted)" if deleted else ""))
                        for i, title, deleted in schedules),
        reports=tuple((slug, title) for slug, title in reports))


def _conditions(tenant_id: int, filters: RunFilters) -> list[Any]:
    """The WHERE clause of the filtered runs of a tenant."""
    where: list[Any] = [ReportRun.tenant_id == tenant_id]
    if filters.schedule_id is not None:
        where.append(ReportRun.schedule_id == filters.schedule_id)
    if filters.report:
        where.append(ReportRun.schedule_id.in_(
            sa.select(Schedule.id).join(Report, Report.id == Schedule.report_id)
            .where(Schedule.tenant_id == tenant_id, Report.slug == filters.report)))
    if filters.status:
        where.append(ReportRun.status == filters.status)
    if filters.start is not None:
        where.append(ReportRun.scheduled_for >= filters.start)
    if filters.end is not None:
        where.append(ReportRun.scheduled_for < filters.end)
    if filters.kind:
        if filters.kind not in KINDS:
            raise InvalidInput(f"The kind {filters.kind!r} is not one of {', '.join(KINDS)}; "
                               f"choose one of them or none.")
        where.append({"scheduled": ReportRun.manual.is_(False),
                      "manual": sa.and_(ReportRun.manual.is_(True), ReportRun.test.is_(False)),
                      "test": ReportRun.test.is_(True)}[filters.kind])
    if filters.channel or filters.recipient:
        on = [Delivery.run_id == ReportRun.id]
        if filters.channel:
            on.append(Delivery.channel == filters.channel)
        if filters.recipient:
            on.append(sa.func.lower(Delivery.recipient).contains(filters.recipient.lower(),
                                                                 autoescape=True))
        where.append(sa.exists().where(*on))
    return where


def _slot(value: datetime) -> Any:
    """A cursor's slot as a bind of the column's type (naive UTC on SQLite, aware elsewhere)."""
    return sa.literal(value, ReportRun.__table__.c.scheduled_for.type)


def _aware(value: datetime | str) -> datetime:
    """A MIN/MAX of the slot column (SQLite returns it as text) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _sqlite_offset(zone: ZoneInfo, first: datetime, last: datetime) -> Any:
    """SQLite has no time zones: the zone's UTC offset over [first, last] as a CASE of
    date() modifiers ("+60 minutes"), one branch per offset change in that range."""
    def offset(at: datetime) -> int:
        return int(at.astimezone(zone).utcoffset().total_seconds() // 60)

    changes: list[tuple[datetime, int]] = []   # (from this instant, the new offset)
    at = first
    while at < last:
        step = min(at + timedelta(days=1), last)
        if offset(step) != offset(at):
            low, high = int(at.timestamp()), int(step.timestamp())   # zones change on a second
            while high - low > 1:
                middle = (low + high) // 2
                same = offset(datetime.fromtimestamp(middle, UTC)) == offset(at)
                low, high = (middle, high) if same else (low, middle)
            changes.append((datetime.fromtimestamp(high, UTC), offset(step)))
        at = step
    modifier = lambda minutes: f"{minutes:+d} minutes"  # noqa: E731
    if not changes:
        return modifier(offset(first))
    branches, current = [], offset(first)
    for instant, new in changes:
        branches.append((ReportRun.scheduled_for < instant, modifier(current)))
        current = new
    return sa.case(*branches, else_=modifier(current))


def _expired(expires_at: datetime | None, now: datetime) -> str | None:
    if expires_at is None or expires_at > now:
        return None
    return f"expired on {expires_at.date().isoformat()}"


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else None
