"""Scheduling math: cadences, the DST policy across awkward zones, and its properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from herald.cli import app
from models import cron
from models.errors import InvalidInput


def local(fires: list[datetime], tz: str) -> list[str]:
    zone = ZoneInfo(tz)
    return [f.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for f in fires]


@pytest.mark.parametrize(("cadence", "at", "expected"), [
    ("daily", "09:00", "0 9 * * *"),
    ("daily", "7:05", "5 7 * * *"),
    ("weekly", "18:30", "30 18 * * 1"),
    ("monthly", "00:00", "0 0 1 * *"),
])
def test_cadence_presets(cadence: str, at: str, expected: str) -> None:
    assert cron.cadence_to_cron(cadence, at) == expected


DST_CASES = [
    # America/New_York: spring forward 2026-03-08 02:00 -> 03:00; fall back 2026-11-01 02:00 -> 01:00
    ("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z",
     ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
     ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]),
    # Finer than hourly follows real time: the repeated hour fires twice, the skipped one never.
    ("*/30 * * * *", "America/New_York", "2026-11-01T04:45:00Z",
     ["2026-11-01 01:00 EDT", "2026-11-01 01:30 EDT", "2026-11-01 01:00 EST",
      "2026-11-01 01:30 EST", "2026-11-01 02:00 EST"]),
    # Starting inside the first pass of the repeated hour still finds the second pass.
    ("*/30 * * * *", "America/New_York", "2026-11-01T05:40:00Z",
     ["2026-11-01 01:00 EST", "2026-11-01 01:30 EST", "2026-11-01 02:00 EST"]),
    ("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z",
     ["2026-03-08 01:00 EST", "2026-03-08 03:00 EDT", "2026-03-08 04:00 EDT"]),
    # Europe/London: 2026-03-29 01:00 -> 02:00; 2026-10-25 02:00 -> 01:00
    ("30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z",
     ["2026-03-28 01:30 GMT", "2026-03-29 02:00 BST", "2026-03-30 01:30 BST"][1:]),
    ("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z",
     ["2026-10-25 01:30 BST", "2026-10-26 01:30 GMT"]),
    # Weekly on the fall-back Sunday fires once.
    ("15 1 * * 7", "Europe/London", "2026-10-20T00:00:00Z",
     ["2026-10-25 01:15 BST", "2026-11-01 01:15 GMT"]),
    # Europe/Moscow has no DST: plain daily times.
    ("0 9 * * *", "Europe/Moscow", "2026-03-28T00:00:00Z",
     ["2026-03-28 09:00 MSK", "2026-03-29 09:00 MSK"]),
    # Australia/Lord_Howe shifts by 30 minutes: 2026-10-04 02:00 -> 02:30; 2026-04-05 02:00 -> 01:30
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-02T12:00:00Z",
     ["2026-10-03 02:15 +1030", "2026-10-04 02:30 +11", "2026-10-05 02:15 +11"]),
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-03T12:00:00Z",
     ["2026-04-04 01:45 +11", "2026-04-05 01:45 +11", "2026-04-06 01:45 +1030"]),
    # Asia/Kathmandu: +05:45, no DST.
    ("0 9 * * 1", "Asia/Kathmandu", "2026-06-01T00:00:00Z",
     ["2026-06-01 09:00 +0545", "2026-06-08 09:00 +0545"]),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), DST_CASES)
def test_dst_policy(expr: str, tz: str, after: str, expected: list[str]) -> None:
    start = datetime.fromisoformat(after)
    assert local(cron.next_fires(expr, tz, start, len(expected)), tz) == expected


def test_cron_next_cli_prints_the_issue_examples() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["cron", "next", "30 2 * * *", "--timezone", "America/New_York",
                                 "--after", "2026-03-07T00:00:00Z", "--count", "3", "--json"])
    assert result.exit_code == 0, result.stderr
    fires = json.loads(result.stdout)["fires"]
    assert [(f["local"], f["zone"]) for f in fires] == [
        ("2026-03-07T02:30:00-05:00", "EST"), ("2026-03-08T03:00:00-04:00", "EDT"),
        ("2026-03-09T02:30:00-04:00", "EDT")]
    assert [f["utc"] for f in fires] == ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z",
                                         "2026-03-09T06:30:00Z"]

    text = runner.invoke(app, ["cron", "next", "30 1 * * *", "--timezone", "America/New_York",
                               "--after", "2026-10-31T12:00:00Z", "--count", "2"]).stdout
    assert "2026-11-01 01:30 EDT" in text and "2026-11-02 01:30 EST" in text
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["2026-11-01", "2026-11-02"]


def test_validation_refuses_what_croniter_would_misread() -> None:
    for bad in ("", "* * * *", "0 0 9 * * *", "60 * * * *", "0 24 * * *", "@every_minute"):
        with pytest.raises(InvalidInput, match="Invalid cron expression"):
            cron.validate_cron(bad)
    assert cron.validate_cron("  0   9 * *  1-5 ") == "0 9 * * 1-5"
    assert cron.validate_cron("@DAILY") == "@daily"


def test_coalescing_and_grace() -> None:
    due = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 3, 0, 30, tzinfo=UTC)
    every5 = cron.plan_due_slot("*/5 * * * *", "UTC", due, now, timedelta(hours=1))
    assert (every5.slot, every5.missed) == (datetime(2026, 1, 1, 3, 0, tzinfo=UTC), False)
    assert every5.next_run_at == datetime(2026, 1, 1, 3, 5, tzinfo=UTC)
    daily = cron.plan_due_slot("0 0 * * *", "UTC", due, now, timedelta(hours=1))
    assert (daily.slot, daily.missed) == (due, True)
    # A month of per-minute slots is not replayed one by one: the search window doubles back.
    month = cron.plan_due_slot("* * * * *", "UTC", due, due + timedelta(days=31, seconds=5),
                               timedelta(hours=1))
    assert month.slot == due + timedelta(days=31)


ZONES = ["America/New_York", "Europe/London", "Europe/Moscow", "Australia/Lord_Howe",
         "Asia/Kathmandu", "America/Santiago", "UTC"]
COARSE = st.builds(lambda m, h, dow: f"{m} {h} * * {dow}",
                   st.sampled_from(["0", "15", "30", "45", "0,30", "5-10"]),
                   st.sampled_from(["0", "1", "2", "3", "1,2", "0-3", "*/3", "22"]),
                   st.sampled_from(["*", "0", "1-5", "6,7"]))
FINE = st.sampled_from(["* * * * *", "*/15 * * * *", "0 * * * *", "30 * * * 1-5", "*/7 * * * *"])
START = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31),
                     timezones=st.just(UTC))


def matches_locally(expr: str, instant: datetime, tz: str) -> bool:
    from croniter import croniter

    wall = instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    return croniter.match(expr, wall)


def is_gap_end(instant: datetime, tz: str) -> bool:
    zone = ZoneInfo(tz)
    before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
    return before < instant.astimezone(zone).utcoffset()


@settings(max_examples=150, deadline=None)
@given(expr=st.one_of(COARSE, FINE), tz=st.sampled_from(ZONES), start=START)
def test_fires_increase_and_each_is_a_local_match_or_a_gap_end(expr, tz, start) -> None:
    fires = cron.next_fires(expr, tz, start, 40)
    assert fires[0] > start
    assert all(a < b for a, b in zip(fires, fires[1:], strict=False))
    for fire in fires:
        assert matches_locally(expr, fire, tz) or is_gap_end(fire, tz), fire


@settings(max_examples=150, deadline=None)
@given(expr=COARSE, tz=st.sampled_from(ZONES), start=START)
def test_coarser_than_hourly_never_fires_a_wall_time_twice_on_a_date(expr, tz, start) -> None:
    zone = ZoneInfo(tz)
    walls = [f.astimezone(zone).strftime("%Y-%m-%d %H:%M") for f in cron.next_fires(expr, tz, start, 60)]
    assert len(walls) == len(set(walls))


@settings(max_examples=60, deadline=None)
@given(tz=st.sampled_from(ZONES), start=START, hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_a_fixed_daily_time_fires_exactly_once_per_local_day(tz, start, hour, minute) -> None:
    zone = ZoneInfo(tz)
    fires = cron.next_fires(f"{minute} {hour} * * *", tz, start, 400)
    days = [f.astimezone(zone).date() for f in fires]
    assert len(days) == len(set(days))
    assert (days[-1] - days[0]).days == len(days) - 1  # no local day skipped


TRANSITIONS = [datetime.fromisoformat(t) for t in (
    "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z",   # New York
    "2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z",   # London
    "2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z",   # Lord Howe
)]
NEAR_TRANSITION = st.builds(lambda t, m: t + timedelta(minutes=m), st.sampled_from(TRANSITIONS),
                            st.integers(-300, 300))


@settings(max_examples=200, deadline=None)
@given(expr=st.one_of(COARSE, FINE), tz=st.sampled_from(["America/New_York", "Europe/London",
                                                         "Australia/Lord_Howe"]),
       start=NEAR_TRANSITION)
def test_near_transitions_no_fire_is_lost_or_duplicated(expr, tz, start) -> None:
    """Starting anywhere gives the same fires as starting earlier and dropping those before."""
    reference = []
    for fire in cron.iter_fires(expr, tz, start - timedelta(hours=6)):
        if fire > start:
            reference.append(fire)
        if len(reference) == 20:
            break
    assert cron.next_fires(expr, tz, start, 20) == reference
