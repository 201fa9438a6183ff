"""The schedules table at a glance, its data: each schedule's last ten outcomes (test sends
aside, the strip its row keeps), when it last fired, and a mark on the rows that need
attention; read in the same few queries whatever the number of schedules and of their runs.
On SQLite and PostgreSQL. (How the strip is written: tests/pipeline/test_recent_runs.py.)

(Beside tests/admin/test_schedules_data.py, whose `world` this uses: acme with one schedule,
beta with one.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from admin.schedules import view
from models.runs import FINAL_RUN_STATES, ReportRun
from models.schedules import Schedule, set_active, with_outcome
from models.tenancy import Role
from services import schedule_table, schedules
from services.schedules import ScheduleValues
from tests.admin.test_schedules_data import NOW, viewer_for, world  # noqa: F401

DAY = timedelta(days=1)


def add_runs(session: Session, schedule_id: int, statuses: Sequence[str], start: datetime, *,
             test: bool = False, manual: bool = False) -> None:
    """Runs of the schedule a day apart from `start`, in the given states; each that ended
    (not a test) goes into the schedule's strip as `end_run` and the tick put it there."""
    schedule = session.get(Schedule, schedule_id)
    made = [ReportRun(schedule_id=schedule_id, tenant_id=schedule.tenant_id,
                      scheduled_for=start + i * DAY, status=status, test=test, manual=manual)
            for i, status in enumerate(statuses)]
    session.add_all(made)
    session.flush()
    for run in made:
        if not test and run.status in FINAL_RUN_STATES:
            schedule.recent_runs = with_outcome(schedule.recent_runs, run.id, run.status,
                                                run.scheduled_for)
    session.commit()


def listed(session: Session, world) -> dict[int, schedules.ScheduleRow]:  # noqa: F811
    viewer = viewer_for(session, world, Role.VIEWER)
    return {r.id: r for r in schedule_table.list_schedules(session, viewer, world["acme"])}


def test_each_row_has_its_last_ten_outcomes_oldest_first_without_tests(
    session: Session, world  # noqa: F811
) -> None:
    # Given twelve runs of acme's schedule (the newest a manual one), two newer test sends,
    # a second acme schedule with one run and beta's schedule with runs of its own
    history = ["failed", "failed", "success", "partial", "failed", "missed", "success", "success",
               "failed", "running", "failed", "failed"]
    start = NOW - 20 * DAY
    add_runs(session, world["mine"], history[:-1], start)
    add_runs(session, world["mine"], history[-1:], start + 11 * DAY, manual=True)
    add_runs(session, world["mine"], ["success", "success"], start + 12 * DAY, test=True)
    add_runs(session, world["theirs"], ["success"] * 3, start)
    editor = viewer_for(session, world, Role.EDITOR)
    second = schedules.save_schedule(session, editor, world["acme"],
                                     ScheduleValues(report="views", cron="0 7 * * *"), now=NOW)
    quiet = schedules.save_schedule(session, editor, world["acme"],
                                    ScheduleValues(report="views", cron="0 8 * * *"), now=NOW)
    add_runs(session, second.id, ["partial"], start)

    rows = listed(session, world)

    # Then acme's rows show their own last ten outcomes, oldest first: no test send among
    # them, nor the run still under way
    mine = rows[world["mine"]]
    ended = [status for status in history if status != "running"]
    assert mine.outcomes == tuple(ended[-10:])
    assert view.strip(mine.outcomes) == "✕●◐✕–●●✕✕✕"
    newest = start + 11 * DAY  # the manual run; the test sends after it do not count
    assert mine.last_run_local == newest and mine.last_run_local.tzname() == "CET"
    assert view.when(mine.last_run_local) == "Sat 21 Feb 2026 13:00 CET"
    assert (rows[second.id].outcomes, rows[quiet.id].outcomes) == (("partial",), ())
    assert rows[quiet.id].last_run_local is None
    assert set(rows) == {world["mine"], second.id, quiet.id}
    # And the row an action returns carries them too
    assert schedules.pause(session, editor, world["mine"], now=NOW).outcomes == tuple(ended[-10:])


def test_the_table_says_never_and_paused_where_there_is_no_time_and_marks_read_in_any_font(
    session: Session, world  # noqa: F811
) -> None:
    # Given acme's schedule with a success, a failure and a run under way, paused, and a second
    # schedule that never ran
    add_runs(session, world["mine"], ["success", "failed", "running"], NOW - 5 * DAY)
    editor = viewer_for(session, world, Role.EDITOR)
    quiet = schedules.save_schedule(session, editor, world["acme"],
                                    ScheduleValues(report="views", cron="0 8 * * *"), now=NOW)
    schedules.pause(session, editor, world["mine"], now=NOW)
    rows = listed(session, world)
    mine, never = rows[world["mine"]], rows[quiet.id]

    # Then the paused one has no next fire but "paused" and last fired for its newest outcome
    # (the run under way has none yet); the other never fired
    assert (view.next_fire(mine), view.last_fired(mine)) == ("paused", "Thu 26 Feb 2026 13:00 CET")
    assert re.fullmatch(r"\w{3} \d\d \w{3} 2026 08:00 CET", view.next_fire(never))
    assert view.last_fired(never) == "never"
    # an active schedule with nothing planned (its zone no longer exists) shows a dash
    assert view.next_fire(never._replace(next_run_local=None)) == "—"
    frame = view.table([mine, never])
    assert list(frame["Next fire"]) == ["paused", view.next_fire(never)]
    assert list(frame["Last fired"]) == ["Thu 26 Feb 2026 13:00 CET", "never"]
    assert not frame.isna().any().any()
    # And the strip is shapes every font has (no emoji), each named in the legend; a run that
    # was under way when migration 0016 first filled the strips shows as "?" until it ends
    assert list(frame["Last 10"]) == ["●✕", ""]
    assert view.strip(["success", "running"]) == "●?"
    marks = [*view.OUTCOME_MARKS.values(), view.OTHER_MARK]
    assert all(ord(mark) < 0x2800 for mark in marks) and len(set(marks)) == len(marks)
    assert all(f"{mark} {status}" in view.STRIP_LEGEND for status, mark in view.OUTCOME_MARKS.items())


def test_the_listing_takes_the_same_queries_whatever_the_number_of_schedules_and_runs(
    session: Session, world  # noqa: F811
) -> None:
    statements: list[str] = []

    def queries() -> int:
        statements.clear()

        def count(conn, cursor, statement, *args) -> None:
            statements.append(statement)

        engine = session.get_bind()
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            listed(session, world)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        session.rollback()
        return len(statements)

    add_runs(session, world["mine"], ["success"] * 15, NOW - 30 * DAY)
    few = queries()
    editor = viewer_for(session, world, Role.EDITOR)
    for hour in range(20):
        made = schedules.save_schedule(session, editor, world["acme"],
                                       ScheduleValues(report="views", cron=f"0 {hour} * * *"),
                                       now=NOW)
        add_runs(session, made.id, ["failed"] * 12, NOW - 30 * DAY)
    assert queries() == few
    assert len(listed(session, world)) == 21
    # the strips are on the schedules' rows: no run is read
    assert not [s for s in statements if "report_run" in s]


def test_failing_flagged_and_auto_paused_rows_are_marked(session: Session, world) -> None:  # noqa: F811
    editor = viewer_for(session, world, Role.EDITOR)
    made = {name: schedules.save_schedule(session, editor, world["acme"],
                                          ScheduleValues(report="views", cron=f"0 {h} * * *"),
                                          now=NOW).id
            for h, name in enumerate(["failing", "flagged", "auto", "manual", "fine"])}
    for name, status in [("failing", "failed"), ("flagged", "invalid"), ("fine", "success"),
                         ("manual", "success"), ("auto", "failed")]:
        session.get(Schedule, made[name]).last_status = status
    set_active(session, session.get(Schedule, made["manual"]), False, NOW, actor=editor.email)
    reason = "Paused automatically after 3 failed runs in a row; the last error: boom."
    set_active(session, session.get(Schedule, made["auto"]), False, NOW, actor="cli", reason=reason)
    session.commit()

    rows = listed(session, world)
    table = view.table([rows[i] for i in made.values()]).set_index("Id")
    assert {name: table.loc[i, "⚠"] for name, i in made.items()} == {
        "failing": "⚠", "flagged": "⚠", "auto": "⚠", "manual": "", "fine": ""}
    auto = rows[made["auto"]]
    assert (auto.paused, auto.paused_reason, auto.paused_at) == (True, reason, NOW)
    assert view.paused_by_herald(auto) == f"{reason} Paused Mon 02 Mar 2026 13:00 CET."
    assert rows[made["manual"]].paused_reason is None
    # And those rows are tinted: the page's one style rule names exactly their cells
    css = view.highlighted(table.reset_index()).to_html().split("</style>")[0]
    selectors, rule = css.split("{")[0], css.split("{")[1]
    assert "background-color: rgba(255, 75, 75, 0.12)" in rule
    assert {int(r) for r in re.findall(r"_row(\d+)_col", selectors)} == {0, 1, 2}  # in `made` order
