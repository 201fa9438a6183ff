"""The agenda: runs due per minute over the next 24 hours, on SQLite and PostgreSQL.

New York's clocks go forward on Sunday 8 March 2026 at 07:00 UTC (02:00 EST becomes 03:00
EDT) and back on Sunday 1 November 2026 at 06:00 UTC (02:00 EDT becomes 01:00 EST).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from models import cron
from models.db import session_scope
from models.schedules import Schedule
from services.agenda import agenda
from tests.jobs.helpers import add_schedules, make_tenant

NY = "America/New_York"
BEFORE_SPRING = datetime(2026, 3, 7, 12, 0, 20, tzinfo=UTC)
BEFORE_FALL = datetime(2026, 10, 31, 12, 0, 20, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add(url: str, ids: tuple[int, int], expr: str, timezone: str, now: datetime, count: int = 1,
        **kwargs) -> list[int]:
    """`count` schedules whose next run is planned from `now`, as `herald schedule add` plans it."""
    return add_schedules(url, *ids, count, cron=expr, timezone=timezone,
                         next_run_at=cron.next_fire(expr, timezone, now), **kwargs)


def agenda_at(url: str, now: datetime):
    with session_scope(url) as session:
        return agenda(session, now)


def hourly_minutes(start: str, hours: int) -> dict[datetime, int]:
    return {utc(start) + timedelta(hours=h): 1 for h in range(hours)}


def test_spring_forward_daily_hourly_and_weekly_fire_at_the_right_minutes(db_url: str) -> None:
    ids = make_tenant(db_url)
    add(db_url, ids, "30 2 * * *", NY, BEFORE_SPRING)  # 02:30 does not exist on the 8th
    add(db_url, ids, "0 * * * *", NY, BEFORE_SPRING)   # follows real time: every hour once
    add(db_url, ids, "0 3 * * 0", NY, BEFORE_SPRING)   # Sundays 03:00 EDT
    result = agenda_at(db_url, BEFORE_SPRING)
    # The skipped 02:30 fires at the first instant after the gap: 03:00 EDT, with the weekly one.
    expected = hourly_minutes("2026-03-07T13:00", 24)
    expected[utc("2026-03-08T07:00")] += 2
    assert result.per_minute == expected
    assert result.busiest[0] == (utc("2026-03-08T07:00"), 3)
    assert (result.total, result.schedules, result.invalid) == (26, 3, 0)


def test_fall_back_fires_a_repeated_wall_time_once(db_url: str) -> None:
    ids = make_tenant(db_url)
    add(db_url, ids, "30 1 * * *", NY, BEFORE_FALL)  # 01:30 happens twice on the 1st
    add(db_url, ids, "0 * * * *", NY, BEFORE_FALL)   # real time: 01:00 EDT and 01:00 EST both fire
    add(db_url, ids, "0 1 * * 0", NY, BEFORE_FALL)   # Sundays 01:00, the first one only
    result = agenda_at(db_url, BEFORE_FALL)
    expected = hourly_minutes("2026-10-31T13:00", 24)
    expected[utc("2026-11-01T05:30")] = 1   # 01:30 EDT; not again at 01:30 EST (06:30 UTC)
    expected[utc("2026-11-01T05:00")] += 1  # 01:00 EDT; not again at 01:00 EST (06:00 UTC)
    assert result.per_minute == expected
    assert result.total == 26


def test_a_pile_up_at_the_top_of_the_hour_is_the_busiest_minute(db_url: str) -> None:
    ids = make_tenant(db_url)
    add(db_url, ids, "0 9 * * *", "Europe/Berlin", BEFORE_SPRING, count=40)
    add(db_url, ids, "0 4 * * *", "America/Chicago", BEFORE_SPRING, count=5)  # CDT by then
    add(db_url, ids, "17 9 * * *", "UTC", BEFORE_SPRING, count=2)
    result = agenda_at(db_url, BEFORE_SPRING)
    assert result.busiest == [(utc("2026-03-08T08:00"), 40), (utc("2026-03-08T09:00"), 5),
                              (utc("2026-03-08T09:17"), 2)]
    assert (result.total, result.schedules) == (47, 47)


def test_paused_deleted_flagged_and_unparseable_schedules_are_skipped(db_url: str) -> None:
    ids = make_tenant(db_url)
    add(db_url, ids, "0 9 * * *", "UTC", BEFORE_SPRING)
    add(db_url, ids, "0 10 * * *", "UTC", BEFORE_SPRING, active=False)
    [deleted] = add(db_url, ids, "0 11 * * *", "UTC", BEFORE_SPRING)
    add_schedules(db_url, *ids, 2, cron="0 12 * * *", next_run_at=None)  # flagged by the tick
    add_schedules(db_url, *ids, 1, cron="0 25 * * *", next_run_at=BEFORE_SPRING + timedelta(hours=1))
    add_schedules(db_url, *ids, 1, cron="0 9 * * *", timezone="Mars/Olympus",
                  next_run_at=BEFORE_SPRING + timedelta(hours=1))
    with session_scope(db_url) as session:
        schedules = Schedule.__table__
        session.execute(schedules.update().where(schedules.c.id == deleted)
                        .values(deleted_at=BEFORE_SPRING, active=False))
    result = agenda_at(db_url, BEFORE_SPRING)
    assert result.per_minute == {utc("2026-03-08T09:00"): 1}
    assert (result.schedules, result.invalid) == (1, 4)


def test_a_slot_already_due_counts_once_in_the_current_minute(db_url: str) -> None:
    ids = make_tenant(db_url)
    # Due five hours ago (the tick was down): the next tick claims one run, then hourly again.
    add_schedules(db_url, *ids, 3, cron="0 * * * *", next_run_at=BEFORE_SPRING - timedelta(hours=5))
    add_schedules(db_url, *ids, 1, cron="0 9 * * *", next_run_at=BEFORE_SPRING + timedelta(days=2))
    result = agenda_at(db_url, BEFORE_SPRING)
    expected = {minute: 3 for minute in hourly_minutes("2026-03-07T13:00", 24)}
    expected[utc("2026-03-07T12:00")] = 3
    assert result.per_minute == expected
    assert result.schedules == 3  # the one due in two days is outside the window


ZONES = [NY, "America/Chicago", "America/Havana", "America/Santiago", "Europe/London",
         "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
         "Pacific/Chatham", "America/Sao_Paulo", "UTC"]
CRONS = ["30 1 * * *", "0 2 * * *", "30 2 * * *", "59 1 * * *", "0 0 * * *", "*/20 * * * *",
         "*/7 0-4 * * *", "15 1-3 * * 0", "0 9 * * 1-5", "45 23 * * 6"]
NOWS = [BEFORE_SPRING, utc("2026-03-08T06:30"), utc("2026-03-08T08:00"), BEFORE_FALL,
        utc("2026-11-01T06:10"), utc("2026-10-24T23:30"), utc("2026-04-04T14:00"),
        utc("2026-09-26T12:00")]


def test_every_zone_and_cron_agrees_with_following_each_schedule(db_url: str) -> None:
    """The agenda shares work between schedules (a cron's wall times shifted per zone, zones
    with the same DST changes followed once); it must count exactly what following each
    schedule with `iter_fires` counts: on and around DST changes, just before and after one."""
    ids = make_tenant(db_url)
    for now in NOWS:
        with session_scope(db_url) as session:
            session.execute(sa.delete(Schedule.__table__))
        expected: dict[datetime, int] = {}
        for zone in ZONES:
            for expr in CRONS:
                add(db_url, ids, expr, zone, now)
                first = cron.next_fire(expr, zone, now)
                for fire in itertools.chain([first], cron.iter_fires(expr, zone, first)):
                    if fire >= now + timedelta(hours=24):
                        break
                    minute = fire.replace(second=0)
                    expected[minute] = expected.get(minute, 0) + 1
        result = agenda_at(db_url, now)
        assert result.per_minute == expected, now
        assert result.total == sum(expected.values())


def test_herald_health_json_carries_the_agenda_when_asked(db_url: str, cli) -> None:
    ids = make_tenant(db_url)
    add(db_url, ids, "0 9 * * *", "Europe/Berlin", BEFORE_SPRING, count=2)
    result = cli("health", "--json", "--agenda", "--now", BEFORE_SPRING.isoformat())
    data = json.loads(result.stdout)
    assert data["agenda"]["total"] == 2
    assert data["agenda"]["busiest"] == [{"minute": "2026-03-08T08:00:00+00:00", "runs": 2}]
    assert "agenda" not in json.loads(cli("health", "--json", "--now", BEFORE_SPRING.isoformat()).stdout)
