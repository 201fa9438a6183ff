"""Scheduling math: cadences, cron validation, fire times and herald's DST policy.

No I/O and no clock: every function takes the instant it reasons about.

DST policy (PRODUCT.md invariant 5). An expression that names specific hours is
a *wall-clock* schedule: it fires once per matching local time; a local time
skipped by spring-forward fires at the first instant after the gap; a local time
repeated by fall-back fires once, at its first occurrence. An expression whose
hour field is every hour follows *real time*: each real instant whose local time
matches fires, so the repeated hour fires twice and the skipped hour not at all.
croniter alone fires `30 1 * * *` twice on a fall-back day; this module does not.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from croniter import croniter

from models.errors import InvalidInput

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
# No zone shifts its clock by more than this at once; used to look for a
# fall-back just ahead, whose repeated wall times lie behind `after`'s.
_MAX_SHIFT = timedelta(hours=3)


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone, or `InvalidInput` saying how to name one."""
    try:
        if name and name.strip() == name and name in _zone_names():
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise InvalidInput(
        f"Unknown timezone {name!r}; use an IANA name such as Europe/London or America/New_York."
    )


def _zone_names() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


_ZONES: set[str] | None = None


def parse_hhmm(at: str) -> tuple[int, int]:
    match = _HHMM.match(at or "")
    if not match:
        raise InvalidInput(f"--at {at!r} is not a time of day; write it as HH:MM, e.g. 09:30.")
    return int(match.group(1)), int(match.group(2))


def cadence_to_cron(cadence: str, at: str) -> str:
    """daily/weekly/monthly at HH:MM as cron: every day, every Monday, the 1st of the month."""
    try:
        kind = Cadence(cadence)
    except ValueError:
        raise InvalidInput(
            f"Unknown cadence {cadence!r}; use daily, weekly or monthly."
        ) from None
    hour, minute = parse_hhmm(at)
    return {
        Cadence.DAILY: f"{minute} {hour} * * *",
        Cadence.WEEKLY: f"{minute} {hour} * * 1",
        Cadence.MONTHLY: f"{minute} {hour} 1 * *",
    }[kind]


def validate_cron(expr: str) -> str:
    """The expression with whitespace normalised, or `InvalidInput` explaining the form."""
    normalised = " ".join((expr or "").split())
    fields = normalised.split(" ")
    if normalised.lower() in MACROS:
        return normalised.lower()
    if len(fields) != 5 or not croniter.is_valid(normalised):
        raise InvalidInput(
            f"Invalid cron expression {expr!r}; use five fields 'minute hour day month weekday', "
            f"e.g. '30 9 * * 1-5'."
        )
    return normalised


# The five fields each macro stands for (`describe` reads five fields only).
MACRO_FIELDS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}


def describe(expr: str) -> str:
    """The expression in words, e.g. 'At 09:30, Monday through Friday' (macros too)."""
    options = Options()
    options.use_24hour_time_format = True
    expr = validate_cron(expr)
    return ExpressionDescriptor(MACRO_FIELDS.get(expr, expr), options).get_description()


@functools.lru_cache(maxsize=4096)
def describe_or_none(expr: str) -> str | None:
    """The expression in words, or None for a stored one that no longer parses."""
    try:
        return describe(expr)
    except InvalidInput:
        return None


def follows_real_time(expr: str) -> bool:
    """True for expressions finer than hourly (the hour field covers every hour)."""
    hours = croniter.expand(validate_cron(expr))[0][1]
    return hours == ["*"] or len(hours) == 24


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the DST gap that swallowed the local time `wall`."""
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the transition
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # after it
    return transition_instant(before, after, zone)


def transition_instant(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant (to the second) between `low` and `high` at which `zone`'s offset changes."""
    after_offset = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == after_offset:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def _instants(wall: datetime, zone: ZoneInfo, real_time: bool) -> list[datetime]:
    """The UTC instants a matching local wall time fires at, under the DST policy."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
    if not exists:
        return [] if real_time else [_gap_end(wall, zone)]
    if first.utcoffset() != second.utcoffset() and real_time:
        return [first.astimezone(UTC), second.astimezone(UTC)]
    return [first.astimezone(UTC)]


@functools.lru_cache(maxsize=4096)
def _compiled(expr: str, timezone: str) -> tuple[str, ZoneInfo, bool]:
    expr = validate_cron(expr)
    return expr, parse_timezone(timezone), follows_real_time(expr)


def _first_wall(after: datetime, zone: ZoneInfo) -> datetime:
    """Where to start iterating wall times so no fire after `after` is skipped.

    Normally `after`'s own wall time; when the clock falls back within the next
    few hours, that much earlier, since the repeated wall times come again.
    """
    local = after.astimezone(zone)
    shift = local.utcoffset() - (after + _MAX_SHIFT).astimezone(zone).utcoffset()
    return local.replace(tzinfo=None) - max(shift, timedelta(0))


def iter_fires(expr: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Fire instants (aware UTC) strictly after `after`, in increasing order."""
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    expr, zone, real_time = _compiled(expr, timezone)
    walls = croniter(expr, _first_wall(after, zone))
    pending: list[datetime] = []
    last = after.astimezone(UTC)
    while True:
        wall = walls.get_next(datetime)
        # Instants grow with the wall time, so anything pending below this
        # candidate's earliest possible instant can no longer be overtaken: emit it.
        horizon = min(wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
        while pending and pending[0] < horizon:
            instant = heapq.heappop(pending)
            if instant > last:
                last = instant
                yield instant
        for instant in _instants(wall, zone, real_time):
            heapq.heappush(pending, instant)


def next_fire(expr: str, timezone: str, after: datetime) -> datetime:
    """The first fire instant strictly after `after`."""
    return next(iter_fires(expr, timezone, after))


def next_fires(expr: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    fires = iter_fires(expr, timezone, after)
    return [next(fires) for _ in range(count)]


def latest_fire_at_or_before(
    expr: str, timezone: str, now: datetime, not_before: datetime
) -> datetime | None:
    """The latest fire in [not_before, now], or None; cost follows the window searched.

    A schedule down for a month with a per-minute cron is not replayed minute by
    minute: the window doubles back from `now` until it holds a fire.
    """
    window = timedelta(minutes=10)
    while True:
        start = max(not_before, now - window)
        latest = None
        for fire in iter_fires(expr, timezone, start - timedelta(microseconds=1)):
            if fire > now:
                break
            latest = fire
        if latest is not None or start == not_before:
            return latest
        window *= 4


@dataclass(frozen=True)
class DueSlot:
    """What a tick does with a due schedule: which slot runs, whether it is too late."""

    slot: datetime
    missed: bool
    next_run_at: datetime


def plan_due_slot(
    expr: str, timezone: str, due_at: datetime, now: datetime, grace: timedelta
) -> DueSlot:
    """Coalesce every slot in [due_at, now] into the latest; past `grace` it is MISSED.

    The common case (a slot or two since the last tick) walks forward from
    `due_at` on one iterator, whose first fire past `now` is the next run; a
    long outage searches back from `now` instead of replaying every slot.
    """
    fires = iter_fires(expr, timezone, due_at - timedelta(microseconds=1))
    latest = None
    for _ in range(_FORWARD_STEPS):
        fire = next(fires)
        if fire > now:
            slot = latest or due_at
            return DueSlot(slot=slot, missed=now - slot > grace, next_run_at=fire)
        latest = fire
    slot = latest_fire_at_or_before(expr, timezone, now, latest)
    return DueSlot(slot=slot, missed=now - slot > grace, next_run_at=next_fire(expr, timezone, now))


_FORWARD_STEPS = 8
