"""The live cron helper: words, the next five fires in three zones, and the DST changes and
short months among them said in words; the same fires the tick uses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from admin.schedules.cron_helper import preview
from models import cron
from models.errors import InvalidInput


def local_times(result) -> list[str]:
    return [f"{f.local:%Y-%m-%d %H:%M %Z}" for f in result.fires]


def test_new_york_0230_daily_across_spring_forward() -> None:
    result = preview(cadence="daily", at="02:30", timezone="America/New_York",
                     viewer_timezone="Europe/Berlin", now=datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    assert (result.expression, result.description) == ("30 2 * * *", "At 02:30")
    assert local_times(result) == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT",
                                   "2026-03-09 02:30 EDT", "2026-03-10 02:30 EDT",
                                   "2026-03-11 02:30 EDT"]
    assert [f"{f.utc:%d %H:%M}" for f in result.fires] == ["07 07:30", "08 07:00", "09 06:30",
                                                             "10 06:30", "11 06:30"]
    assert [f"{f.viewer:%d %H:%M %Z}" for f in result.fires] == [
        "07 08:30 CET", "08 08:00 CET", "09 07:30 CET", "10 07:30 CET", "11 07:30 CET"]
    assert [f.note for f in result.fires] == [None, "skipped 02:30 on 8 Mar fires at 03:00",
                                              None, None, None]
    assert result.notes == ("skipped 02:30 on 8 Mar fires at 03:00",)
    # the tick's own fire times, to the second
    assert [f.utc for f in result.fires] == cron.next_fires("30 2 * * *", "America/New_York",
                                                            datetime(2026, 3, 6, 12, 0, tzinfo=UTC), 5)


def test_new_york_fall_back_fires_once_at_the_first() -> None:
    result = preview(cron_expr="30 1 * * *", timezone="America/New_York", viewer_timezone="UTC",
                     now=datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    assert local_times(result)[0] == "2026-11-01 01:30 EDT"
    assert result.notes == ("01:30 on 1 Nov happens twice; it fires once, at the first",)


def test_europe_london_both_changes() -> None:
    spring = preview(cron_expr="30 1 * * *", timezone="Europe/London", viewer_timezone="America/New_York",
                     now=datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    assert local_times(spring)[:3] == ["2026-03-28 01:30 GMT", "2026-03-29 02:00 BST",
                                       "2026-03-30 01:30 BST"]
    assert spring.notes == ("skipped 01:30 on 29 Mar fires at 02:00",)
    assert f"{spring.fires[1].viewer:%Y-%m-%d %H:%M %Z}" == "2026-03-28 21:00 EDT"
    autumn = preview(cron_expr="30 1 * * *", timezone="Europe/London", viewer_timezone="Europe/London",
                     now=datetime(2026, 10, 23, 12, 0, tzinfo=UTC))
    assert autumn.notes == ("01:30 on 25 Oct happens twice; it fires once, at the first",)
    plain = preview(cadence="weekly", at="09:00", timezone="Europe/London", viewer_timezone="Asia/Tokyo",
                    now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert plain.description == "At 09:00, only on Monday"
    assert local_times(plain)[0] == "2026-06-08 09:00 BST" and plain.notes == ()


def test_every_fifteen_minutes_follows_real_time() -> None:
    quiet = preview(cron_expr="*/15 * * * *", timezone="Europe/London", viewer_timezone=None,
                    now=datetime(2026, 6, 1, 12, 5, tzinfo=UTC))
    assert quiet.description == "Every 15 minutes"
    assert [f"{f.local:%H:%M}" for f in quiet.fires] == ["13:15", "13:30", "13:45", "14:00", "14:15"]
    assert quiet.viewer_timezone == "UTC" and quiet.notes == ()
    gap = preview(cron_expr="*/15 * * * *", timezone="America/New_York", viewer_timezone="UTC",
                  now=datetime(2026, 3, 8, 6, 40, tzinfo=UTC))
    assert [f"{f.local:%H:%M}" for f in gap.fires] == ["01:45", "03:00", "03:15", "03:30", "03:45"]
    assert gap.notes == ("02:00–03:00 on 8 Mar does not exist (the clocks go forward); "
                         "nothing fires in it",)
    repeat = preview(cron_expr="*/15 * * * *", timezone="Europe/London", viewer_timezone="UTC",
                     now=datetime(2026, 10, 25, 0, 40, tzinfo=UTC))
    assert [f"{f.local:%H:%M %Z}" for f in repeat.fires][:3] == ["01:45 BST", "01:00 GMT", "01:15 GMT"]
    assert repeat.notes == ("01:00–02:00 on 25 Oct happens twice (the clocks go back); it fires in both",)


def test_day_31_warns_that_short_months_are_skipped() -> None:
    result = preview(cron_expr="0 9 31 * *", timezone="Europe/London", viewer_timezone="UTC",
                     now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [f"{f.local:%b %d}" for f in result.fires] == ["Jan 31", "Mar 31", "May 31", "Jul 31", "Aug 31"]
    assert result.notes == ("day 31 does not exist in every month; those months are skipped",)
    january = preview(cron_expr="0 9 31 1 *", timezone="UTC", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert january.notes == ()
    several = preview(cron_expr="0 9 29-31 * *", timezone="UTC", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert several.notes == ("days 29, 30 and 31 do not exist in every month; a month without one "
                             "of them skips that day",)


@pytest.mark.parametrize(("given", "message"), [
    (dict(cron_expr="61 25 * * *"), "Invalid cron expression '61 25 * * *'; use five fields"),
    (dict(cron_expr="0 9 30 2 *"), "cron '0 9 30 2 *' never fires, since day 30 never occurs in February"),
    (dict(cadence="daily"), "The daily cadence needs a time; set at to HH:MM"),
    (dict(cadence="daily", at="25:00"), "at '25:00' is not a time of day"),
    (dict(cron_expr="0 9 * * *", timezone="Mars/Olympus"), "Unknown timezone 'Mars/Olympus'"),
    (dict(), "A schedule needs cron or cadence"),
])
def test_invalid_input_is_one_sentence(given: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        preview(**{"timezone": "UTC", **given}, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert str(refused.value).startswith(message)
    assert str(refused.value).replace("e.g. ", "").count(". ") == 0


def test_macros_are_described_like_their_five_fields() -> None:
    result = preview(cron_expr="@monthly", timezone="Europe/London", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert (result.expression, result.description) == ("@monthly", "At 00:00, on day 1 of the month")
    assert local_times(result)[:2] == ["2026-02-01 00:00 GMT", "2026-03-01 00:00 GMT"]
