"""The live cron helper: an expression (or cadence and time) in words and its next fire times.

Pure: no I/O and no clock (`now` is an argument). Fire times come from `models.cron`, the
module the tick uses, so what the helper shows is what the tick will do, DST included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from models import cron
from models.cadence import resolve_cron, short_month_days
from models.cron import describe
from models.errors import InvalidInput

FIRES = 5


@dataclass(frozen=True)
class Fire:
    """One fire time: in the schedule's timezone, the viewer's and UTC (all aware)."""

    local: datetime
    viewer: datetime
    utc: datetime
    note: str | None  # what a DST change does to this fire, in words


@dataclass(frozen=True)
class CronPreview:
    """What the helper shows under the cron field."""

    expression: str           # the effective cron (a cadence becomes its expression)
    description: str          # e.g. "At 09:30, Monday through Friday"
    timezone: str
    viewer_timezone: str      # the zone `Fire.viewer` is in (UTC when the browser gave none)
    fires: tuple[Fire, ...]
    notes: tuple[str, ...]    # DST changes among the fires and day-of-month warnings


def preview(*, timezone: str, now: datetime, cron_expr: str | None = None,
            cadence: str | None = None, at: str | None = None,
            viewer_timezone: str | None = None, count: int = FIRES) -> CronPreview:
    """The expression in words and its next `count` fires after `now`; invalid input raises
    `InvalidInput` with the one sentence the save would give."""
    expr = resolve_cron(cron_expr, cadence, at)
    zone = cron.parse_timezone(timezone)
    viewer_name = _viewer_zone(viewer_timezone)
    viewer_zone = ZoneInfo(viewer_name)
    real_time = cron.follows_real_time(expr)
    fires = []
    for instant in cron.next_fires(expr, timezone, now, count):
        local = instant.astimezone(zone)
        fires.append(Fire(local=local, viewer=instant.astimezone(viewer_zone),
                          utc=instant.astimezone(UTC), note=dst_note(expr, local, real_time)))
    notes = [f.note for f in fires if f.note] + [day_warning(short_month_days(expr))]
    return CronPreview(expression=expr, description=describe(expr), timezone=timezone,
                       viewer_timezone=viewer_name, fires=tuple(fires),
                       notes=tuple(dict.fromkeys(n for n in notes if n)))


def _viewer_zone(name: str | None) -> str:
    """The viewer's zone if it is a known IANA name, else UTC (the browser may give none)."""
    try:
        cron.parse_timezone(name or "")
    except InvalidInput:
        return "UTC"
    return name


def dst_note(expr: str, local: datetime, real_time: bool) -> str | None:
    """What a DST change does to the fire at `local`, in words; None when nothing."""
    zone = local.tzinfo
    skipped = _skipped_before(expr, local)
    if skipped and real_time:
        start, end = _changed_walls(skipped[0], zone)
        return (f"{_hhmm(start)}–{_hhmm(end)} on {_day(start)} does not exist (the clocks go "
                f"forward); nothing fires in it")
    if skipped:
        fires = "fires" if len(skipped) == 1 else "fire once,"
        times = _join([_hhmm(w) for w in skipped])
        return f"skipped {times} on {_day(skipped[0])} {fires} at {_hhmm(local)}"
    wall = local.replace(tzinfo=None)
    first, second = _occurrences(wall, zone)
    if first == second:
        return None
    if real_time:
        start, end = _changed_walls(wall, zone)
        return (f"{_hhmm(start)}–{_hhmm(end)} on {_day(start)} happens twice (the clocks go "
                f"back); it fires in both")
    return f"{_hhmm(local)} on {_day(local)} happens twice; it fires once, at the first"


def _skipped_before(expr: str, local: datetime) -> list[datetime]:
    """The matching wall times the clock skipped in the gap that ends at `local`, earliest first."""
    zone, walls = local.tzinfo, croniter(expr, local.replace(tzinfo=None, fold=0))
    instant, skipped = local.astimezone(UTC), []
    while True:
        wall = walls.get_prev(datetime)
        before_gap, after_gap = _occurrences(wall, zone)[::-1]
        if _exists(wall, zone) or not before_gap < instant <= after_gap:
            return skipped[::-1]
        skipped.append(wall)


def _occurrences(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The wall time read with the offsets before and after a change (fold 0 and 1), in UTC.

    They differ only near a change: for a repeated time, its two instants in order; for a
    skipped one, the later instant first.
    """
    return tuple(wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def _changed_walls(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The wall-clock span a change around `wall` skips or repeats, earlier end first."""
    change = cron.transition_instant(*sorted(_occurrences(wall, zone)), zone)
    walls = sorted((change.astimezone(zone).replace(tzinfo=None), (change - timedelta(seconds=1))
                    .astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1)))
    return walls[0], walls[1]


def day_warning(days: list[int]) -> str | None:
    """A warning for days of month (29–31) some months lack; None when there are none."""
    if not days:
        return None
    if len(days) == 1:
        return f"day {days[0]} does not exist in every month; those months are skipped"
    return (f"days {_join([str(d) for d in days])} do not exist in every month; "
            f"a month without one of them skips that day")


def _hhmm(value: datetime) -> str:
    return f"{value:%H:%M}"


def _day(value: datetime) -> str:
    return f"{value.day} {value:%b}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
