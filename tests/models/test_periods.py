"""Reporting periods: exact instants around New York and London DST changes, the same period
for a slot however late it runs, and how a period reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models import cron
from models.definition import parse_definition
from models.errors import InvalidInput
from models.periods import PeriodKind, explicit, from_params, latest_complete, period_for

NY, LONDON = "America/New_York", "Europe/London"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


def instants(period) -> tuple[datetime, datetime]:
    """The period's real instants, in UTC: aware datetimes in one zone subtract by wall clock,
    and an ambiguous local time (fall-back) never compares equal to another zone's."""
    return period.start.astimezone(UTC), period.end.astimezone(UTC)


def schedule_slot(zone: str, expr: str, after: datetime) -> datetime:
    """The schedule's real slot: its first fire after `after`, as the tick would run it."""
    return cron.next_fire(expr, zone, after)


@pytest.mark.parametrize(("zone", "slot_day", "start", "end", "hours", "label"), [
    # spring forward: the reported day has 23 hours
    (NY, (2026, 3, 9), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23, "8 Mar 2026"),
    (LONDON, (2026, 3, 30), utc(2026, 3, 29, 0), utc(2026, 3, 29, 23), 23, "29 Mar 2026"),
    # fall back: 25 hours
    (NY, (2026, 11, 2), utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25, "1 Nov 2026"),
    (LONDON, (2026, 10, 26), utc(2026, 10, 24, 23), utc(2026, 10, 26, 0), 25, "25 Oct 2026"),
])
def test_a_daily_slot_reports_the_previous_local_day_however_long_it_was(
    zone, slot_day, start, end, hours, label
) -> None:
    slot = schedule_slot(zone, cron.cadence_to_cron("daily", "09:00"), local(zone, *slot_day))

    period = period_for(slot, zone, cadence="daily", cron_expr="0 9 * * *", kind=None)

    assert instants(period) == (start, end)
    assert instants(period)[1] - instants(period)[0] == timedelta(hours=hours)
    assert period.start.tzinfo == ZoneInfo(zone) and period.start.hour == period.end.hour == 0
    assert period.kind == PeriodKind.PREVIOUS_DAY and period.label == label


def test_a_weekly_slot_reports_the_previous_monday_based_week_across_both_changes() -> None:
    expr = cron.cadence_to_cron("weekly", "09:00")
    march = period_for(schedule_slot(NY, expr, local(NY, 2026, 3, 8)), NY, cadence="weekly",
                       cron_expr=expr, kind=None)
    november = period_for(schedule_slot(NY, expr, local(NY, 2026, 11, 1)), NY, cadence="weekly",
                          cron_expr=expr, kind=None)

    # 2–8 March holds the spring-forward Sunday: a week one hour short
    assert instants(march) == (utc(2026, 3, 2, 5), utc(2026, 3, 9, 4))
    assert march.label == "2–8 Mar 2026"
    # 26 Oct – 1 Nov holds the fall-back Sunday: one hour long, and spans two months
    assert instants(november) == (utc(2026, 10, 26, 4), utc(2026, 11, 2, 5))
    assert instants(november)[1] - instants(november)[0] == timedelta(days=7, hours=1)
    assert november.label == "26 Oct–1 Nov 2026"


def test_a_monthly_slot_reports_the_previous_calendar_month_in_london() -> None:
    expr = cron.cadence_to_cron("monthly", "09:00")
    march = period_for(utc(2026, 4, 1, 8), LONDON, cadence="monthly", cron_expr=expr, kind=None)
    october = period_for(utc(2026, 11, 1, 9), LONDON, cadence="monthly", cron_expr=expr, kind=None)

    assert instants(march) == (utc(2026, 3, 1, 0), utc(2026, 3, 31, 23))
    assert instants(october) == (utc(2026, 9, 30, 23), utc(2026, 11, 1, 0))
    assert (march.label, october.label) == ("Mar 2026", "Oct 2026")


def test_a_cron_slot_reports_the_time_since_its_previous_fire_under_the_dst_policy() -> None:
    # 02:30 does not exist on 8 March in New York: that day's fire is at 03:00 EDT
    skipped = period_for(local(NY, 2026, 3, 9, 2, 30), NY, cadence=None, cron_expr="30 2 * * *",
                         kind=None)
    assert instants(skipped) == (utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30))
    assert skipped.kind == PeriodKind.SINCE_LAST_FIRE
    assert skipped.label == "8 Mar 2026 03:00 – 9 Mar 2026 02:30"

    # 01:30 happens twice on 1 November; a wall-clock schedule fired once, at the first
    repeated = period_for(utc(2026, 11, 2, 6, 30), NY, cadence=None, cron_expr="30 1 * * *", kind=None)
    assert instants(repeated) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30))
    assert repeated.label == "1 Nov 2026 01:30 EDT – 2 Nov 2026 01:30 EST"

    # an hourly schedule follows real time: London's repeated 01:00 is two fires an hour apart
    hourly = period_for(utc(2026, 10, 25, 1), LONDON, cadence=None, cron_expr="0 * * * *", kind=None)
    assert instants(hourly) == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1))
    assert hourly.label == "25 Oct 2026 01:00 BST – 25 Oct 2026 01:00 GMT"


def test_the_report_file_overrides_the_schedules_period() -> None:
    slot = local(LONDON, 2026, 10, 26, 9)
    week = period_for(slot, LONDON, cadence="daily", cron_expr="0 9 * * *", kind="previous_week")
    assert instants(week) == (utc(2026, 10, 18, 23), utc(2026, 10, 26, 0))
    assert period_for(slot, LONDON, cadence="daily", cron_expr="0 9 * * *", kind="none") is None
    with pytest.raises(InvalidInput, match="Unknown period 'weekly'; use one of previous_day"):
        period_for(slot, LONDON, cadence="daily", cron_expr="0 9 * * *", kind="weekly")


@pytest.mark.parametrize(("zone", "expr", "cadence", "slot"), [
    (NY, "0 9 * * *", "daily", utc(2026, 11, 2, 14)),
    (LONDON, "0 9 * * 1", "weekly", utc(2026, 3, 30, 8)),
    (NY, "30 2 * * *", None, utc(2026, 3, 9, 6, 30)),
])
def test_a_slot_rerun_a_day_late_reports_the_period_it_would_have_reported_on_time(
    zone, expr, cadence, slot
) -> None:
    # Given a slot, when its run is replayed a day later (now has moved on, the slot has not)
    on_time = period_for(slot, zone, cadence=cadence, cron_expr=expr, kind=None)
    a_day_late = latest_complete(slot + timedelta(days=1), zone, "previous_day")

    # then the slot's period is unchanged: only the slot decides it
    assert period_for(slot, zone, cadence=cadence, cron_expr=expr, kind=None) == on_time
    # whereas "the latest complete day as of now" has moved: that is not what a re-run reports
    assert a_day_late.end > on_time.end


def test_a_stored_period_reads_back_the_same_and_a_hand_given_one_is_checked() -> None:
    period = period_for(utc(2026, 11, 2, 14), NY, cadence="daily", cron_expr="0 9 * * *", kind=None)
    stored = {name: value.isoformat() for name, value in period.params().items()}
    assert from_params(stored, ZoneInfo(NY)) == period

    given = explicit(datetime(2026, 10, 1), datetime(2026, 11, 1), NY)
    assert given.kind == PeriodKind.PREVIOUS_MONTH and given.label == "Oct 2026"
    with pytest.raises(InvalidInput, match=r"give a --period-end later than --period-start\.$"):
        explicit(datetime(2026, 11, 1), datetime(2026, 10, 1), NY)


def test_a_report_file_may_bind_the_period_and_names_a_known_one() -> None:
    base = {"slug": "daily", "title": "Daily", "csv": {"sql": "SELECT 1 WHERE now() >= :period_start"}}
    assert parse_definition(base).uses_period()  # no params entry needed for the two names
    with pytest.raises(InvalidInput, match=r"^report: period 'weekly' is not a period herald knows; "
                                           r"use one of previous_day, .*, none\.$"):
        parse_definition({**base, "period": "weekly"})
    with pytest.raises(InvalidInput, match=r"csv.sql uses :period_start or :period_end but period is "
                                           r"none; remove `period: none` or the parameter\.$"):
        parse_definition({**base, "period": "none"})
