"""The Schedules page one page of the table at a time (Streamlit's AppTest on SQLite): "Schedules
1–100 of 250" with Previous, Next and First page; Sort by and the filters over all the
schedules, not within a page; the picked schedule kept picked on any page; the warning of a
schedule herald paused whatever page it is on. The paging itself: tests/admin/test_schedule_pages.py.

Fixtures and helpers are those of tests/admin/test_schedules_page.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from admin.schedules import view as schedules_view
from models.schedules import Schedule
from tests.admin.test_app_login import shown
from tests.admin.test_schedules_page import (  # noqa: F401 - fixtures
    NOW,
    VIEWER,
    choose,
    click,
    on_sqlite,
    page,
    page_clock,
    table_ids,
    world,
)
from tests.delivery.conftest import videos_file  # noqa: F401

MORE = 249  # acme's schedules beside its first: 250 in all, three pages


@pytest.fixture
def many(session: Session, world) -> list[int]:  # noqa: F811
    """acme's 250 schedules by id: each next fires a minute earlier than the one before it (the
    last one first), every seventh last failed, and #200 herald paused."""
    mine = session.get(Schedule, world["mine"])
    made = [Schedule(tenant_id=mine.tenant_id, report_id=mine.report_id, cron=f"{i % 60} 9 * * *",
                     timezone="Europe/Berlin", next_run_at=NOW + timedelta(days=1, minutes=-i),
                     last_status="failed" if i % 7 == 0 else "success") for i in range(1, MORE + 1)]
    session.add_all(made)
    session.flush()
    ids = [world["mine"], *(s.id for s in made)]
    halted = session.get(Schedule, ids[199])
    halted.active, halted.paused_reason, halted.paused_at = False, "Paused automatically after 3 failed runs.", NOW
    session.commit()
    return ids


def says(at) -> str:
    return next(line for line in shown(at.main).splitlines() if line.startswith("Schedules "))


@on_sqlite
def test_the_table_shows_a_page_at_a_time_and_the_picked_schedule_on_any(
    session: Session, world, many: list[int]  # noqa: F811
) -> None:
    # Given 250 schedules, the page shows the first 100 and says so
    at = page(VIEWER)
    assert table_ids(at) == many[:100]
    assert says(at) == "Schedules 1–100 of 250"
    assert at.button(key=schedules_view.PREVIOUS).disabled and at.button(key=schedules_view.FIRST).disabled
    # and warns of the schedule herald paused, though it is on the second page
    assert any(f"#{many[199]} Video performance" in w.value for w in at.warning)

    # When Next is pressed twice, the last page shows the last 50, and Next is no more
    click(at, schedules_view.NEXT)
    assert (table_ids(at), says(at)) == (many[100:200], "Schedules 101–200 of 250")
    click(at, schedules_view.NEXT)
    assert (table_ids(at), says(at)) == (many[200:], "Schedules 201–250 of 250")
    assert at.button(key=schedules_view.NEXT).disabled

    # A schedule picked on the last page stays picked on the others
    choose(at, many[220])
    assert at.subheader[0].value == f"Schedule {many[220]}: Video performance"
    click(at, schedules_view.PREVIOUS)
    assert table_ids(at) == many[100:200]
    assert at.query_params["schedule"] == str(many[220])
    assert at.subheader[0].value == f"Schedule {many[220]}: Video performance"
    assert at.selectbox(key="schedule_pick").value == many[220]
    click(at, schedules_view.FIRST)
    assert table_ids(at) == many[:100] and at.subheader[0].value.startswith(f"Schedule {many[220]}:")


@on_sqlite
def test_sort_and_filters_cover_every_page_and_start_again_from_the_first(
    session: Session, world, many: list[int]  # noqa: F811
) -> None:
    at = click(page(VIEWER), schedules_view.NEXT)
    assert says(at) == "Schedules 101–200 of 250"

    # Sorted by next fire, the first page holds the earliest of all 250 (the first made, at
    # 09:00 Berlin, then the last made), and the paused one (none) comes last
    at.selectbox(key="schedules_sort").select("Next fire").run()
    assert says(at) == "Schedules 1–100 of 250"
    assert table_ids(at) == [many[0], *(i for i in reversed(many[1:]) if i != many[199])][:100]
    click(at, schedules_view.NEXT)
    click(at, schedules_view.NEXT)
    assert table_ids(at)[-1] == many[199]

    # Filtered on the last status, the count is of those that match, from the first page
    at.selectbox(key="schedules_sort").select("Id").run()
    at.selectbox(key="schedules_status").select("failed").run()
    failed = [i for n, i in enumerate(many) if n and n % 7 == 0]
    assert (table_ids(at), says(at)) == (failed, f"Schedules 1–{len(failed)} of {len(failed)} "
                                                  f"that match the filters")
    assert not {schedules_view.NEXT, schedules_view.PREVIOUS} & {b.key for b in at.button}
    # a text filter (it reads what the rows say: the cron in words) pages as well
    at.selectbox(key="schedules_status").select("any").run()
    at.text_input(key="schedules_filter").input("At 09:07").run()
    assert table_ids(at) == [i for n, i in enumerate(many) if n and n % 60 == 7]
    at.text_input(key="schedules_filter").input("nobody-matches").run()
    assert table_ids(at) == [] and "No schedule matches these filters." in [i.value for i in at.info]
