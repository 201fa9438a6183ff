"""Reporting periods: the span of time a run reports on, bound to its slot.

A daily report run on the 24th covers the 23rd in the schedule's timezone; a cron
schedule covers the time since its previous fire. The period is a function of the
slot alone, never of the clock, so a run that starts late, or a slot re-run the
next day, reports the same period it would have reported on time.

Day, week and month boundaries are local midnights computed with zoneinfo, so a
23- or 25-hour DST day is exactly as long as the wall clock says.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from models import cron
from models.errors import InvalidInput

PARAM_NAMES = ("period_start", "period_end")
"""The bind parameters every report query may use."""


class PeriodKind(StrEnum):
    PREVIOUS_DAY = "previous_day"
    PREVIOUS_WEEK = "previous_week"
    PREVIOUS_MONTH = "previous_month"
    SINCE_LAST_FIRE = "since_last_fire"
    NONE = "none"


PERIOD_KINDS = tuple(kind.value for kind in PeriodKind)
_FOR_CADENCE = {cron.Cadence.DAILY: PeriodKind.PREVIOUS_DAY, cron.Cadence.WEEKLY: PeriodKind.PREVIOUS_WEEK,
                cron.Cadence.MONTHLY: PeriodKind.PREVIOUS_MONTH}
# How far back to look for a cron schedule's previous fire; a yearly cron is the rarest.
_LOOK_BACK = timedelta(days=367)


@dataclass(frozen=True)
class Period:
    """[start, end) as aware datetimes in the schedule's timezone, and how it reads."""

    kind: PeriodKind
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """The period as a reader says it: "23 Nov 2026", "16–22 Nov 2026", "Oct 2026"."""
        last = (self.end - timedelta(microseconds=1)).date()
        if self.kind == PeriodKind.PREVIOUS_DAY:
            return _day(self.start.date())
        if self.kind == PeriodKind.PREVIOUS_MONTH:
            return self.start.strftime("%b %Y")
        if self.kind == PeriodKind.PREVIOUS_WEEK:
            first = self.start.date()
            if (first.year, first.month) == (last.year, last.month):
                return f"{first.day}–{_day(last)}"
            if first.year == last.year:
                return f"{first.day} {first:%b}–{_day(last)}"
            return f"{_day(first)}–{_day(last)}"
        # Across a clock change the zone says which 01:00 is meant: "01:00 BST – 01:00 GMT".
        zone = " %Z" if self.start.utcoffset() != self.end.utcoffset() else ""
        return (f"{_day(self.start.date())} {self.start.strftime('%H:%M' + zone)} – "
                f"{_day(self.end.date())} {self.end.strftime('%H:%M' + zone)}")

    def params(self) -> dict[str, datetime]:
        """The bind parameters a report query sees: `:period_start` and `:period_end`."""
        return {"period_start": self.start, "period_end": self.end}


def _day(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def default_kind(cadence: str | None) -> PeriodKind:
    """A cadence's natural period (daily → previous day, …); a cron expression's is since its last fire."""
    if cadence:
        return _FOR_CADENCE[cron.Cadence(cadence)]
    return PeriodKind.SINCE_LAST_FIRE


def parse_kind(kind: str) -> PeriodKind:
    try:
        return PeriodKind(kind)
    except ValueError:
        raise InvalidInput(f"Unknown period {kind!r}; use one of {', '.join(PERIOD_KINDS)}.") from None


def period_for(slot: datetime, timezone: str, *, cadence: str | None, cron_expr: str,
               kind: str | None) -> Period | None:
    """The period the slot reports on; None when the report says `period: none`.

    `kind` is the report's `period:` override; without one the schedule decides.
    """
    if slot.tzinfo is None:
        raise ValueError("slot must be an aware datetime")
    chosen = parse_kind(kind) if kind else default_kind(cadence)
    if chosen == PeriodKind.NONE:
        return None
    zone = cron.parse_timezone(timezone)
    local = slot.astimezone(zone)
    if chosen == PeriodKind.SINCE_LAST_FIRE:
        start = previous_fire(cron_expr, timezone, slot)
        return Period(chosen, start.astimezone(zone), local)
    today = local.date()
    if chosen == PeriodKind.PREVIOUS_DAY:
        first, last = today - timedelta(days=1), today
    elif chosen == PeriodKind.PREVIOUS_WEEK:
        last = today - timedelta(days=today.weekday())  # this week's Monday
        first = last - timedelta(days=7)
    else:
        last = today.replace(day=1)
        first = (last - timedelta(days=1)).replace(day=1)
    return Period(chosen, _midnight(first, zone), _midnight(last, zone))


def _midnight(day: date, zone) -> datetime:
    """The first instant of `day` in `zone` (normalised, in case midnight itself was skipped)."""
    return datetime.combine(day, time(0), zone).astimezone(UTC).astimezone(zone)


@functools.lru_cache(maxsize=1024)
def previous_fire(expr: str, timezone: str, slot: datetime) -> datetime:
    """The latest fire of `expr` strictly before `slot`, under herald's DST policy (kept: the
    schedules due at one slot often share their cron, and walking it back costs milliseconds)."""
    before = slot - timedelta(microseconds=1)
    fire = cron.latest_fire_at_or_before(expr, timezone, before, before - _LOOK_BACK)
    if fire is None:
        raise InvalidInput(f"The cron expression {expr!r} has no fire in the year before {slot:%Y-%m-%d}; "
                           f"give the report `period: none` or a cadence.")
    return fire


def latest_complete(now: datetime, timezone: str, kind: str | None) -> Period | None:
    """The latest period of `kind` (default previous_day) that has ended by `now`: what an
    export or a preview outside any schedule reports on."""
    chosen = parse_kind(kind) if kind else PeriodKind.PREVIOUS_DAY
    if chosen == PeriodKind.SINCE_LAST_FIRE:
        chosen = PeriodKind.PREVIOUS_DAY  # no schedule, no fires: yesterday is the nearest meaning
    return period_for(now, timezone, cadence=None, cron_expr="", kind=chosen.value)


def explicit(start: datetime, end: datetime, timezone: str) -> Period:
    """A period given by hand (`--period-start/--period-end`), in `timezone` when naive."""
    zone = cron.parse_timezone(timezone)
    start, end = (t if t.tzinfo else t.replace(tzinfo=zone) for t in (start, end))
    if end <= start:
        raise InvalidInput(f"The period ends ({end.isoformat()}) before it starts ({start.isoformat()}); "
                           f"give a --period-end later than --period-start.")
    return from_bounds(start.astimezone(zone), end.astimezone(zone))


def from_bounds(start: datetime, end: datetime) -> Period:
    """The period [start, end) (aware, in the timezone it reads in), named for its shape: a
    whole local day, a Monday-to-Monday week or a calendar month; otherwise a span."""
    first, last = start.date(), end.date()
    if start.time() == end.time() == time(0):
        if last - first == timedelta(days=1):
            return Period(PeriodKind.PREVIOUS_DAY, start, end)
        if last - first == timedelta(days=7) and first.weekday() == 0:
            return Period(PeriodKind.PREVIOUS_WEEK, start, end)
        if first.day == last.day == 1 and (last - first).days <= 31 and first.month != last.month:
            return Period(PeriodKind.PREVIOUS_MONTH, start, end)
    return Period(PeriodKind.SINCE_LAST_FIRE, start, end)


def from_params(params: dict[str, Any], zone: tzinfo | None = None) -> Period | None:
    """The period bound in `params` (datetimes or the ISO text a run stores), read in `zone`."""
    if "period_start" not in params or "period_end" not in params:
        return None
    start, end = (v if isinstance(v, datetime) else datetime.fromisoformat(v)
                  for v in (params["period_start"], params["period_end"]))
    if zone is not None:
        start, end = start.astimezone(zone), end.astimezone(zone)
    return from_bounds(start, end)
