"""The schedules table: one row per live schedule of a tenant, with its recipients as delivery
plans them and its last outcomes (the "Last 10" strip its row keeps, `Schedule.recent_runs`),
read for 10,000 schedules in three queries, or one page of them (`schedule_page`).

Rows are built from plain column rows, not ORM objects (a query per row took 15 s for 10,000
schedules, ORM objects 1 s).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from models import cron
from models.errors import InvalidInput
from models.reports import Report
from models.schedules import Schedule, ScheduleRecipient
from models.tenancy import TenantRecipient
from services.access import Action, Who, require

SCHEDULES, REPORTS = Schedule.__table__, Report.__table__
RECIPIENTS = ScheduleRecipient.__table__
# What a table row needs of a schedule (a Schedule or a row of these columns will do).
ROW_COLUMNS = ("id", "report_id", "cron", "timezone", "active", "next_run_at", "last_status",
               "last_error", "last_fired_at", "formats", "channels", "subject", "paused_reason",
               "paused_at", "recent_runs")
NOT_RUN = "not run yet"  # a schedule without a last status: what the table says, and its filter
ORDERS = ("id", "next_run", "report", "last_status")  # how the table may be sorted
PAGE_SIZE = 100


class Recipient(NamedTuple):
    """Someone a schedule sends to; `fallback` when it is the tenant's, used because the
    schedule names nobody on that channel. (Named tuples: a listing makes thousands.)"""

    channel: str
    address: str
    fallback: bool = False


class ScheduleRow(NamedTuple):
    """One row of the schedules table."""

    id: int
    report_slug: str
    report_title: str
    cron: str
    description: str | None           # the cron in words; None if the stored cron no longer parses
    timezone: str
    next_run_local: datetime | None   # in the schedule's timezone; None while paused
    next_run_utc: datetime | None
    last_status: str | None
    last_error: str | None
    last_fired_at: datetime | None
    recipients: tuple[Recipient, ...]  # per channel sent on: the schedule's own, else the tenant's
    recipients_text: str               # e.g. "boss@acme.example; tenant fallback: -100123"
    formats: tuple[str, ...]
    channels: tuple[str, ...]
    subject: str | None
    paused: bool
    last_run_local: datetime | None = None  # the newest outcome's slot in the schedule's zone
    outcomes: tuple[str, ...] = ()          # the last 10 runs' outcomes (no tests), oldest first
    paused_reason: str | None = None        # why herald paused it (its runs kept failing)
    paused_at: datetime | None = None


class ScheduleFilters(NamedTuple):
    """What the table is filtered and sorted on; the defaults let every schedule through, by id.

    `text` is part of the report's slug or title, of the recipients (the tenant's fallback
    included), of the cron or its words, case-insensitively; `status` a last status, or
    `NOT_RUN` for a schedule without one (None: any); `order` one of `ORDERS`, the id breaking
    ties (paused schedules, which have no next run, last by next run)."""

    text: str = ""
    status: str | None = None
    show_paused: bool = True
    order: str = "id"


class SchedulePage(NamedTuple):
    """One page of the table."""

    rows: list[ScheduleRow]
    total: int   # the schedules the filters let through, on every page
    offset: int  # how many of them come before the first row


def schedule_page(session: Session, who: Who, tenant_id: int,
                  filters: ScheduleFilters | None = None, *, offset: int = 0,
                  limit: int = PAGE_SIZE) -> SchedulePage:
    """The tenant's live schedules `filters` let through, `limit` of them from `offset`, and
    how many there are. Paged in the database (a count, then one page of rows); a text filter,
    which reads what is built (the cron in words, the recipients), builds every row and
    keeps a page. An offset past the end gives the last page."""
    require(who, tenant_id, Action.READ)
    filters = filters or ScheduleFilters()
    if filters.text.strip():
        rows = _text_matches(_rows(session, tenant_id, filters), filters.text)
        offset = _on_a_page(offset, len(rows), limit)
        return SchedulePage(rows[offset:offset + limit], len(rows), offset)
    total = session.execute(_COUNT.where(*_conditions(filters)), {"tenant": tenant_id}).scalar_one()
    offset = _on_a_page(offset, total, limit)
    return SchedulePage(_rows(session, tenant_id, filters, offset, limit), total, offset)


def list_schedules(session: Session, who: Who, tenant_id: int,
                   filters: ScheduleFilters | None = None, *, offset: int = 0,
                   limit: int | None = None) -> list[ScheduleRow]:
    """The tenant's schedules that are not deleted, by id (or as `filters` have them), from
    `offset`, at most `limit` (None: all), sliced in the database."""
    require(who, tenant_id, Action.READ)
    filters = filters or ScheduleFilters()
    if filters.text.strip():
        rows = _text_matches(_rows(session, tenant_id, filters), filters.text)
        return rows[offset:None if limit is None else offset + limit]
    return _rows(session, tenant_id, filters, offset, limit)


def halted_schedules(session: Session, who: Who, tenant_id: int) -> list[tuple[int, str]]:
    """(id, report title) of the tenant's live schedules herald paused itself, by id."""
    require(who, tenant_id, Action.READ)
    return [tuple(r) for r in session.execute(
        sa.select(SCHEDULES.c.id, REPORTS.c.title).join(REPORTS, REPORTS.c.id == SCHEDULES.c.report_id)
        .where(*_LIVE, SCHEDULES.c.paused_reason.is_not(None))
        .order_by(SCHEDULES.c.id), {"tenant": tenant_id})]


def one_row(session: Session, schedule: Schedule) -> ScheduleRow:
    """The table's row of one schedule (what a save, pause or resume returns)."""
    own = [Recipient(r.channel, r.address) for r in _own_recipients(session, schedule.id)]
    return table_row(schedule, session.get(Report, schedule.report_id), own,
                     fallback_recipients(session, schedule.tenant_id))


def schedule_row(session: Session, who: Who, tenant_id: int, schedule_id: int) -> ScheduleRow | None:
    """The table's row of one of the tenant's live schedules; None for another's, or a
    deleted one (the schedule picked on the page, whatever page the table shows)."""
    require(who, tenant_id, Action.READ)
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or schedule.tenant_id != tenant_id or schedule.deleted_at is not None:
        return None
    return one_row(session, schedule)


# The statements of a listing, built once (building them cost as much as running them for a
# page). The columns: formats and channels as their JSON text (decoded once per distinct value
# by `_as_tuple`), the strip as its text too (`_strip`), times as the driver reads them (made
# UTC once per distinct time by `make_rows`).
_COLUMNS = [sa.cast(SCHEDULES.c[c], sa.Text).label(c) if c in ("formats", "channels", "recent_runs")
            else sa.type_coerce(SCHEDULES.c[c], sa.DateTime(timezone=True)).label(c)
            if c in ("next_run_at", "last_fired_at", "paused_at")
            else SCHEDULES.c[c] for c in ROW_COLUMNS]
_LIVE = (SCHEDULES.c.tenant_id == sa.bindparam("tenant"), SCHEDULES.c.deleted_at.is_(None))
_NEXT_RUN = sa.case((SCHEDULES.c.active, SCHEDULES.c.next_run_at))  # none while paused
_ORDERED = {  # by each order of the table, the id breaking ties
    "id": sa.select(*_COLUMNS).where(*_LIVE).order_by(SCHEDULES.c.id),
    "next_run": sa.select(*_COLUMNS).where(*_LIVE)
                  .order_by(_NEXT_RUN.is_(None), _NEXT_RUN, SCHEDULES.c.id),
    "report": sa.select(*_COLUMNS).join(REPORTS, REPORTS.c.id == SCHEDULES.c.report_id)
                .where(*_LIVE).order_by(sa.func.lower(REPORTS.c.title), SCHEDULES.c.id),
    "last_status": sa.select(*_COLUMNS).where(*_LIVE)
                     .order_by(sa.func.coalesce(SCHEDULES.c.last_status, NOT_RUN), SCHEDULES.c.id)}
_PAGED = {order: query.limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
          for order, query in _ORDERED.items()}
_COUNT = sa.select(sa.func.count()).select_from(SCHEDULES).where(*_LIVE)
_REPORTS = (sa.select(REPORTS.c.id, REPORTS.c.slug, REPORTS.c.title)
            .where(REPORTS.c.tenant_id == sa.bindparam("tenant")))
_RECIPIENTS = sa.select(RECIPIENTS.c.schedule_id, RECIPIENTS.c.channel, RECIPIENTS.c.address)
_ALL_RECIPIENTS = _RECIPIENTS.join(SCHEDULES).where(*_LIVE).order_by(RECIPIENTS.c.id)
_PAGE_RECIPIENTS = {  # of the page's schedules: one array on PostgreSQL, one statement cached
    "postgresql": _RECIPIENTS.where(RECIPIENTS.c.schedule_id == sa.any_(
        sa.bindparam("ids", type_=sa.ARRAY(sa.Integer)))).order_by(RECIPIENTS.c.id),
    "sqlite": _RECIPIENTS.where(RECIPIENTS.c.schedule_id.in_(sa.bindparam("ids", expanding=True)))
                         .order_by(RECIPIENTS.c.id)}
_FALLBACK = (sa.select(TenantRecipient.channel, TenantRecipient.address)
             .where(TenantRecipient.tenant_id == sa.bindparam("tenant")).order_by(TenantRecipient.id))


def _conditions(filters: ScheduleFilters) -> list[Any]:
    """What `filters` add to the live schedules of the tenant (`_LIVE`), but the text."""
    where = []
    if filters.status == NOT_RUN:
        where.append(SCHEDULES.c.last_status.is_(None))
    elif filters.status:
        where.append(SCHEDULES.c.last_status == filters.status)
    if not filters.show_paused:
        where.append(SCHEDULES.c.active.is_(True))
    return where


def _on_a_page(offset: int, total: int, limit: int) -> int:
    """`offset` (at least 0), or the last page's start when it lies past the end."""
    offset = max(offset, 0)
    return offset if offset < total or offset == 0 else (total - 1) // limit * limit


def _rows(session: Session, tenant_id: int, filters: ScheduleFilters, offset: int = 0,
          limit: int | None = None) -> list[ScheduleRow]:
    """Three queries whatever the number of schedules (and the tenant's fallback): the
    schedules with their strips, their reports, their recipients."""
    if filters.order not in _ORDERED:
        raise InvalidInput(f"Unknown order {filters.order!r}; use one of {', '.join(ORDERS)}.")
    paged = limit is not None
    query = (_PAGED if paged else _ORDERED)[filters.order]
    if offset and not paged:
        query = query.offset(offset)
    if extra := _conditions(filters):
        query = query.where(*extra)
    tenant = {"tenant": tenant_id}
    # The garbage collector waits until the rows are made, and what was read for them is
    # freed: they are many small objects, none of them garbage, and its passes over them took
    # a fifth of a 10,000-row listing.
    with _collector_paused():
        schedules = session.execute(query, {**tenant, "offset": offset, "limit": limit}
                                    if paged else tenant).all()
        if not schedules:
            return []
        reports = {r.id: r for r in session.execute(_REPORTS, tenant)}
        if paged:
            dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
            recipients = session.execute(_PAGE_RECIPIENTS[dialect], {"ids": [s[0] for s in schedules]})
        else:  # all of them: the tenant's live schedules' recipients
            recipients = session.execute(_ALL_RECIPIENTS, tenant)
        own: dict[int, list[Recipient]] = {}
        for schedule_id, channel, address in recipients.all():
            own.setdefault(schedule_id, []).append(_new(Recipient, (channel, address, False)))
        rows = make_rows(schedules, reports, own, fallback_recipients(session, tenant_id))
        del schedules, recipients, own
    return rows


def _text_matches(rows: list[ScheduleRow], text: str) -> list[ScheduleRow]:
    needle = text.strip().lower()
    return [r for r in rows if needle in " ".join(
        [r.report_slug, r.report_title, r.recipients_text, r.description or "", r.cron]).lower()]


def fallback_recipients(session: Session, tenant_id: int) -> list[Recipient]:
    """The tenant's recipients, used on a channel the schedule names nobody on."""
    return [Recipient(channel, address, True)
            for channel, address in session.execute(_FALLBACK, {"tenant": tenant_id})]


def _own_recipients(session: Session, schedule_id: int) -> list[Recipient]:
    return [Recipient(c, a) for c, a in session.execute(
        sa.select(ScheduleRecipient.channel, ScheduleRecipient.address)
        .where(ScheduleRecipient.schedule_id == schedule_id).order_by(ScheduleRecipient.id))]


def recipients_for(channels: Sequence[str], own: Sequence[Recipient],
                   fallback: Sequence[Recipient]) -> list[Recipient]:
    """Per channel the schedule sends on: its own recipients, else the tenant's (as delivery
    plans them)."""
    chosen: list[Recipient] = []
    for channel in channels:
        mine = [r for r in own if r.channel == channel]
        chosen += mine or [r for r in fallback if r.channel == channel]
    return chosen


def recipients_text(recipients: Sequence[Recipient]) -> str:
    own = [r.address for r in recipients if not r.fallback]
    theirs = [r.address for r in recipients if r.fallback]
    parts = ([", ".join(own)] if own else []) + (["tenant fallback: " + ", ".join(theirs)] if theirs else [])
    return "; ".join(parts) or "nobody: no recipients on its channels and no tenant fallback"


def _as_tuple(value: Sequence[str] | str) -> tuple[str, ...]:
    """A JSON list column as a tuple, whether loaded (a list) or read as its text."""
    return _decoded(value) if isinstance(value, str) else tuple(value)


@functools.lru_cache(maxsize=256)
def _decoded(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


@functools.lru_cache(maxsize=512)
def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return cron.parse_timezone(name)
    except InvalidInput:
        return None


def table_row(schedule: Schedule, report: Report, own: Sequence[Recipient],
              fallback: Sequence[Recipient]) -> ScheduleRow:
    """The table's row of one schedule (an ORM object), as a listing makes it."""
    return make_rows([tuple(getattr(schedule, c) for c in ROW_COLUMNS)], {report.id: report},
                     {schedule.id: list(own)} if own else {}, fallback)[0]


def make_rows(schedules: Iterable[Sequence[Any]], reports: Mapping[int, Any],
              own: Mapping[int, Sequence[Recipient]],
              fallback: Sequence[Recipient]) -> list[ScheduleRow]:
    """The table's rows of `schedules` (each their `ROW_COLUMNS` in order), with `reports` by
    id, each schedule's `own` recipients and the tenant's `fallback`.

    10,000 rows are made in one loop, what rows share worked out once per listing: the cron in
    words; the zone, and a time or a slot in it; a time in UTC; the channels, and what a
    schedule without recipients of its own sends on them (the tenant's)."""
    titles = {report_id: (r.slug, r.title) for report_id, r in reports.items()}
    words: dict[str, str | None] = {}
    # By zone name: the zone, {a next run as read: (in UTC, in the zone)}, {a slot: in the zone}
    zoned: dict[str, tuple[ZoneInfo | None, dict[datetime, tuple], dict[str, datetime]]] = {}
    utc: dict[datetime, datetime] = {}  # a time as read (naive on SQLite): in UTC
    # By the channels' text: them, the tenant's recipients on them and their text, the one
    # channel (None for several)
    sent: dict[str, tuple[tuple[str, ...], tuple[Recipient, ...], str, str | None]] = {}
    decoded: dict[str, tuple[str, ...]] = {}  # formats
    rows: list[ScheduleRow] = []
    append = rows.append
    for (sid, report_id, expr, zone_name, active, next_at, last_status, last_error,
         last_fired_at, formats, channels, subject, paused_reason, paused_at,
         strip) in schedules:
        slug, title = titles[report_id]
        description = words.get(expr, words)
        if description is words:
            description = words[expr] = cron.describe_or_none(expr)
        in_zone = zoned.get(zone_name)
        if in_zone is None:  # a zone that no longer exists has none: the tick flags it
            in_zone = zoned[zone_name] = _zone_or_none(zone_name), {}, {}
        zone, times, slots = in_zone
        if not isinstance(channels, str):  # a Schedule's list (`table_row`)
            channels = json.dumps(channels)
        on = sent.get(channels)
        if on is None:
            sent_on = _as_tuple(channels)
            theirs = tuple(recipients_for(sent_on, (), fallback))
            on = sent[channels] = (sent_on, theirs, recipients_text(theirs),
                                   sent_on[0] if len(sent_on) == 1 else None)
        sent_on, recipients, text, only = on
        mine = own.get(sid)
        if mine and only is not None:  # one channel: its own on it, else (kept) the tenant's
            if len(mine) == 1:
                if mine[0].channel == only:
                    recipients, text = (mine[0],), mine[0].address
            elif picked := [r for r in mine if r.channel == only]:
                recipients, text = tuple(picked), ", ".join([r.address for r in picked])
        elif mine:
            recipients = tuple(recipients_for(sent_on, mine, fallback))
            text = recipients_text(recipients)
        next_utc = next_local = None
        if active and next_at is not None:  # none while paused
            found = times.get(next_at)
            if found is None:
                next_utc = _in_utc(next_at)
                found = times[next_at] = next_utc, next_utc.astimezone(zone) if zone else None
            next_utc, next_local = found
        # The strip: its outcomes oldest first, and its newest slot in the schedule's zone (in
        # UTC if the zone no longer exists).
        outcomes, slot = _strip(strip)
        last_local = None
        if slot is not None:
            last_local = slots.get(slot)
            if last_local is None:
                last_run = datetime.fromisoformat(slot)
                last_local = slots[slot] = last_run.astimezone(zone) if zone else last_run
        if last_fired_at is not None:
            last_fired_at = utc.get(last_fired_at) or utc.setdefault(last_fired_at,
                                                                     _in_utc(last_fired_at))
        shown = decoded.get(formats) if isinstance(formats, str) else tuple(formats)
        if shown is None:
            shown = decoded[formats] = _as_tuple(formats)
        append(_new(ScheduleRow, (
            sid, slug, title, expr, description, zone_name, next_local, next_utc, last_status,
            last_error, last_fired_at, recipients, text, shown, sent_on, subject, not active,
            last_local, outcomes, paused_reason, paused_at and _in_utc(paused_at))))
    return rows


_new = tuple.__new__  # a named tuple from all its fields in order, past its keyword handling


def _in_utc(value: datetime) -> datetime:
    """A time as read, in UTC: aware from PostgreSQL (in the connection's zone), naive UTC from
    SQLite (what `models.db.UTCDateTime` does, for the listing's few distinct times only)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _strip(strip: str | Sequence[Sequence[Any]] | None) -> tuple[tuple[str, ...], str | None]:
    """(the outcomes oldest first, the newest slot's ISO text) of a strip, as its JSON text
    or decoded.

    The text, e.g. [[17, "success", "2026-03-02T09:00:00+00:00"], …], is split at its quotes
    rather than decoded into eleven lists a row (a third of a 10,000-row listing's time): its
    strings are only the statuses and the slots, which hold no quote, so every fourth piece
    from the second is a status and the last but one the newest slot."""
    if not strip or strip == "[]":
        return (), None
    if not isinstance(strip, str):
        return tuple([entry[1] for entry in strip]), strip[-1][2]
    pieces = strip.split('"')
    return tuple(pieces[1::4]), pieces[-2]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection inside (reference counting still frees), as it was after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
