"""`agenda`: how many runs fall due in each minute of the next 24 hours, across all schedules.

A pile-up (thousands of schedules at 09:00 on Monday) shows here before the tick meets it.
Each live, active schedule is followed from its `next_run_at` through its cron in its own
timezone with herald's DST policy (`models.cron.iter_fires`); a slot already due counts in
the current minute, as the next tick coalesces it into one run.

The cost follows the distinct crons, not the schedules: schedules sharing a cron, timezone
and next run are counted together, and in a timezone whose UTC offset does not change
during the window a cron fires at its UTC fires shifted by that offset, so those fires are
computed once per cron. Only zones with a DST change in the window are followed one by one.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from models import cron
from models.errors import InvalidInput
from models.schedules import Schedule

AGENDA_WINDOW = timedelta(hours=24)
BUSIEST_SHOWN = 10
# UTC offsets lie within -12 h and +14 h; a margin of that much covers every zone's shift.
_OFFSET_MARGIN = timedelta(hours=14)
# No zone shifts its clock by more than this (models.cron assumes as much): a wall time
# skipped or repeated by a change lies within this time after it.
_REPEAT_LOOKBACK = timedelta(hours=3)
_OFFSET_STEP = timedelta(minutes=30)  # no zone changes its offset twice within this

SCHEDULES = Schedule.__table__


@dataclass
class Agenda:
    """Runs due per minute in [start, end); minutes are UTC, and only those with runs appear."""

    start: datetime
    end: datetime
    per_minute: dict[datetime, int]
    busiest: list[tuple[datetime, int]]  # the busiest minutes, most runs first, then earliest
    total: int
    schedules: int   # schedules followed (next run before `end`)
    invalid: int     # skipped: flagged by the tick, or a cron or timezone that no longer parses

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "total": self.total,
                "schedules": self.schedules, "invalid": self.invalid,
                "per_minute": {m.isoformat(): n for m, n in sorted(self.per_minute.items())},
                "busiest": [{"minute": m.isoformat(), "runs": n} for m, n in self.busiest]}


def agenda(session: Session, now: datetime, window: timedelta = AGENDA_WINDOW,
           busiest: int = BUSIEST_SHOWN) -> Agenda:
    """The runs due per minute from `now` for `window`, with the busiest minutes and the total."""
    end = now + window
    live = sa.and_(SCHEDULES.c.active.is_(True), SCHEDULES.c.deleted_at.is_(None))
    rows = session.execute(
        sa.select(SCHEDULES.c.cron, SCHEDULES.c.timezone, SCHEDULES.c.next_run_at, sa.func.count())
        .where(live, SCHEDULES.c.next_run_at < end)
        .group_by(SCHEDULES.c.cron, SCHEDULES.c.timezone, SCHEDULES.c.next_run_at)
    ).all()
    # The tick flags a schedule it cannot plan by clearing its next run (last_status=invalid).
    invalid = session.execute(sa.select(sa.func.count()).select_from(SCHEDULES).where(
        live, SCHEDULES.c.next_run_at.is_(None))).scalar_one()
    # A slot already due is claimed by the next tick, with any others missed since: one run, now.
    groups: dict[tuple[str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for expr, timezone, next_run_at, count in rows:
        groups[expr, timezone].append((max(next_run_at, now), count))
    fires = _Fires(now, end)
    per_minute: dict[datetime, int] = defaultdict(int)
    followed = 0
    for (expr, timezone), starts in groups.items():
        try:
            instants = fires.of(expr, timezone)
        except InvalidInput:
            invalid += sum(count for _, count in starts)
            continue
        for first, count in starts:
            followed += count
            for fire in (first, *instants[bisect.bisect_right(instants, first):]):
                per_minute[fire.replace(second=0, microsecond=0)] += count
    top = sorted(per_minute.items(), key=lambda item: (-item[1], item[0]))[:busiest]
    return Agenda(start=now, end=end, per_minute=dict(per_minute), busiest=top,
                  total=sum(per_minute.values()), schedules=followed, invalid=invalid)


class _Fires:
    """Fire instants in [now, end) of each cron in each zone, sharing work between them.

    Where a zone's offset holds, a cron fires at the instants whose wall time matches it: its
    UTC fires shifted by the offset, computed once per cron. Only within a few hours after a
    DST change (and when the cron matches a wall time there) is the zone followed with
    `iter_fires`, once per cron and DST change, however many zones share that change.
    """

    def __init__(self, now: datetime, end: datetime) -> None:
        self.now, self.end = now, end
        self.walls: dict[str, list[datetime]] = {}
        self.zones: dict[str, _Zone] = {}
        self.canonical: dict[tuple, str] = {}  # a zone name for each distinct run of offsets
        self.near_changes: dict[tuple[str, str, datetime], list[datetime]] = {}

    def of(self, expr: str, timezone: str) -> list[datetime]:
        """The fires in [now, end), sorted; InvalidInput when the cron or zone does not parse."""
        zone = self._zone(timezone)
        walls = self._walls(expr)
        fires: list[datetime] = []
        for start, stop, offset in zone.steady:
            low, high = (bisect.bisect_left(walls, t + offset) for t in (start, stop))
            fires += (wall - offset for wall in walls[low:high])
        for start, stop in zone.changing:
            low = bisect.bisect_left(walls, start + zone.lowest)
            if low == len(walls) or walls[low] >= stop + zone.highest:
                continue  # no wall time of the cron falls near this change
            key = (expr, zone.canonical, start)
            if key not in self.near_changes:
                after = cron.iter_fires(expr, zone.canonical, start - timedelta(microseconds=1))
                self.near_changes[key] = _until(after, stop)
            fires += self.near_changes[key]
        return sorted(fires)

    def _walls(self, expr: str) -> list[datetime]:
        """The wall times the cron matches (as UTC fires), wide enough for any zone's offset."""
        if expr not in self.walls:
            start = self.now - _OFFSET_MARGIN - _REPEAT_LOOKBACK
            self.walls[expr] = _until(cron.iter_fires(expr, "UTC", start), self.end + _OFFSET_MARGIN)
        return self.walls[expr]

    def _zone(self, timezone: str) -> _Zone:
        if timezone not in self.zones:
            zone = _Zone.between(cron.parse_timezone(timezone), self.now, self.end, self.canonical)
            self.canonical.setdefault(zone.signature, zone.canonical)
            self.zones[timezone] = zone
        return self.zones[timezone]


@dataclass
class _Zone:
    """A zone's offsets in a window: spans where one offset holds, and spans just after a change."""

    canonical: str                 # the first zone seen with the same offsets (its signature)
    signature: tuple               # (first offset, ((change instant, offset after), ...))
    steady: list[tuple[datetime, datetime, timedelta]]
    changing: list[tuple[datetime, datetime]]
    lowest: timedelta              # the least and greatest offsets in the window
    highest: timedelta

    @classmethod
    def between(cls, zone: ZoneInfo, now: datetime, end: datetime, seen: dict[tuple, str]) -> _Zone:
        """The zone from `now` to `end`, with a few hours' margin on both sides: a fall-back
        just before `now` repeats wall times after it, which herald's policy does not fire
        twice, and `iter_fires` looks a few hours ahead. `seen` names a zone per signature."""
        offset = lambda t: t.astimezone(zone).utcoffset()  # noqa: E731
        first = start = now - _REPEAT_LOOKBACK
        changes = []
        while start < end + _REPEAT_LOOKBACK:
            stop = min(start + _OFFSET_STEP, end + _REPEAT_LOOKBACK)
            if offset(stop) != offset(start):
                changes.append(cron.transition_instant(start, stop, zone))
            start = stop
        offsets = [offset(first)] + [offset(change) for change in changes]
        signature = (offsets[0], tuple(zip(changes, offsets[1:], strict=True)))
        # Within a few hours after a change a wall time may be skipped or repeated: follow it there.
        changing: list[tuple[datetime, datetime]] = []
        for change in changes:
            span = (max(change, now), min(change + _REPEAT_LOOKBACK, end))
            if changing and span[0] <= changing[-1][1]:
                span = (changing[-1][0], max(span[1], changing[-1][1]))
                changing.pop()
            if span[0] < span[1]:
                changing.append(span)
        steady, start = [], now
        for low, high in [*changing, (end, end)]:
            if start < low:
                steady.append((start, low, offset(start)))
            start = max(start, high)
        return cls(canonical=seen.get(signature, zone.key), signature=signature, steady=steady,
                   changing=changing, lowest=min(offsets), highest=max(offsets))


def _until(fires, end: datetime) -> list[datetime]:
    """The fires before `end`. A five-field cron fires at most once a minute (a finer one is
    refused as invalid), so a day holds at most 1,440 fires, 1,500 with a repeated hour."""
    result = []
    for fire in fires:
        if fire >= end:
            return result
        result.append(fire)
    return result
