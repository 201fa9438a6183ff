"""The schedules table in pages, its data (`services.schedule_table`): a slice and the total from
the database, whatever the filters and the order; the text filter over every row; an offset
past the end giving the last page; the picked schedule's row and the schedules herald paused,
read apart from the page. On SQLite and PostgreSQL.

(Beside tests/admin/test_schedules_data.py, whose `world` this uses: acme with one schedule,
beta with one.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from models.errors import InvalidInput, NotFound
from models.schedules import Schedule, set_active
from models.tenancy import Role
from services import schedule_table, schedules
from services.schedule_table import NOT_RUN, ScheduleFilters, schedule_page
from services.schedules import ScheduleValues
from tests.admin.test_schedules_data import NOW, viewer_for, world  # noqa: F401


@pytest.fixture
def acme(session: Session, world) -> list[int]:  # noqa: F811
    """acme's 26 schedules by id: the first with its recipient, 25 more sending to the tenant's
    fallback, at hours that do not follow their ids; every fourth failed last, every fifth
    paused, the twelfth paused by herald."""
    editor = viewer_for(session, world, Role.EDITOR)
    ids = [world["mine"]]
    for n in range(1, 26):
        ids.append(schedules.save_schedule(
            session, editor, world["acme"],
            ScheduleValues(report="views", cron=f"{n} {(n * 7) % 24} * * *", paused=n % 5 == 0),
            now=NOW).id)
        if n % 4 == 0:
            session.get(Schedule, ids[-1]).last_status = "failed"
    set_active(session, session.get(Schedule, ids[11]), False, NOW, actor="herald",
               reason="Paused automatically after 3 failed runs in a row.")
    session.commit()
    return ids


def test_a_page_is_a_slice_of_the_listing_with_the_total(session: Session, world, acme) -> None:  # noqa: F811
    viewer = viewer_for(session, world, Role.VIEWER)
    every = schedule_table.list_schedules(session, viewer, world["acme"])
    assert [r.id for r in every] == acme
    assert schedule_table.list_schedules(session, viewer, world["acme"], offset=5, limit=7) == every[5:12]
    assert schedule_table.list_schedules(session, viewer, world["acme"], offset=20) == every[20:]

    first = schedule_page(session, viewer, world["acme"], limit=10)
    assert (first.rows, first.total, first.offset) == (every[:10], 26, 0)
    last = schedule_page(session, viewer, world["acme"], offset=20, limit=10)
    assert (last.rows, last.total, last.offset) == (every[20:], 26, 20)
    # past the end (schedules deleted meanwhile): the last page
    assert schedule_page(session, viewer, world["acme"], offset=90, limit=10) == last
    assert schedule_page(session, viewer, world["acme"], offset=-3, limit=10).offset == 0


def test_filters_and_order_hold_over_every_page(session: Session, world, acme) -> None:  # noqa: F811
    viewer = viewer_for(session, world, Role.VIEWER)
    every = {r.id: r for r in schedule_table.list_schedules(session, viewer, world["acme"])}

    def pages(filters: ScheduleFilters, size: int = 4) -> tuple[list[int], int]:
        ids, offset, total = [], 0, None
        while total is None or offset < total:
            page = schedule_page(session, viewer, world["acme"], filters, offset=offset, limit=size)
            ids += [r.id for r in page.rows]
            offset, total = offset + size, page.total
        return ids, total

    far = datetime.max.replace(tzinfo=UTC)
    rows = list(every.values())
    assert pages(ScheduleFilters(order="next_run")) == (
        [r.id for r in sorted(rows, key=lambda r: (r.next_run_utc or far, r.id))], 26)
    assert pages(ScheduleFilters(order="last_status")) == (
        [r.id for r in sorted(rows, key=lambda r: (r.last_status or NOT_RUN, r.id))], 26)
    failed = [r.id for r in rows if r.last_status == "failed"]
    assert pages(ScheduleFilters(status="failed")) == (failed, 6)
    running_never_run = [r.id for r in rows if r.last_status is None and not r.paused]
    assert pages(ScheduleFilters(status=NOT_RUN, show_paused=False)) == (
        running_never_run, len(running_never_run)) and len(running_never_run) < 26 - 6
    # The text filter reads what the rows say: the cron in words, the tenant's fallback
    at_7 = [r.id for r in rows if r.description.startswith("At 07:")]
    assert pages(ScheduleFilters(text=" AT 07:"), size=1) == (at_7, len(at_7)) and at_7
    assert pages(ScheduleFilters(text="tenant fallback: ops@"))[1] == 25
    assert pages(ScheduleFilters(text="boss@", order="report")) == ([world["mine"]], 1)
    with pytest.raises(InvalidInput, match="Unknown order 'colour'"):
        schedule_page(session, viewer, world["acme"], ScheduleFilters(order="colour"))


def test_the_picked_row_and_the_halted_are_read_apart_from_the_page(
    session: Session, world, acme  # noqa: F811
) -> None:
    viewer = viewer_for(session, world, Role.VIEWER)
    row = schedule_table.schedule_row(session, viewer, world["acme"], acme[17])
    assert row == {r.id: r for r in schedule_table.list_schedules(session, viewer, world["acme"])}[acme[17]]
    assert schedule_table.schedule_row(session, viewer, world["acme"], world["theirs"]) is None
    schedules.delete(session, viewer_for(session, world, Role.EDITOR), acme[17], now=NOW)
    assert schedule_table.schedule_row(session, viewer, world["acme"], acme[17]) is None
    assert schedule_table.halted_schedules(session, viewer, world["acme"]) == [(acme[11], "Views")]
    with pytest.raises(NotFound):  # another tenant's
        schedule_page(session, viewer, world["beta"])
