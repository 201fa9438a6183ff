"""The "Last 10" strip a schedule's row keeps (`Schedule.recent_runs`): written as each run ends
(`pipeline.lifecycle.end_run`: success, partial, failed, skipped; never a test run) and by the
tick for the slots it misses (`jobs.claim`); a resent run's entry replaced, not added; the last
ten kept, oldest first. On SQLite and PostgreSQL. (How the table reads it:
tests/admin/test_schedule_outcomes.py; how migration 0016 filled it: tests/models/test_migrations.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from jobs.tick import tick
from models.db import get_engine, session_scope, utcnow
from models.runs import ReportRun, RunStatus
from models.schedules import RECENT, Schedule, with_outcome, with_outcomes
from pipeline.lifecycle import create_manual_run, end_run, move
from services import runs
from services.access import OPERATOR
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import add_schedules, in_process, make_tenant, runs_of

NOW = datetime(2026, 3, 2, 12, 0, 20, tzinfo=UTC)
DAY = timedelta(days=1)
RUNS = ReportRun.__table__


def strip_of(schedule_id: int) -> list[list]:
    with session_scope() as session:
        return session.get(Schedule, schedule_id).recent_runs


# --- the strip itself --------------------------------------------------------------------------

def test_an_outcome_goes_in_by_slot_a_run_once_and_the_last_ten_stay() -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    strip: list[list] = []
    for i in range(12):  # ended out of order: the even slots first
        n = (i * 2) % 12 + (i * 2) // 12
        strip = with_outcome(strip, 100 + n, "success" if n % 3 else "failed", start + n * DAY)
    assert [entry[0] for entry in strip] == list(range(102, 112))  # the ten newest, oldest first
    assert len(strip) == RECENT
    assert strip[-1] == [111, "success", (start + 11 * DAY).isoformat()]

    # A run that ends again (resent) has its entry replaced; the strip given is left as it was
    before = [list(entry) for entry in strip]
    again = with_outcome(strip, 105, RunStatus.SUCCESS, start + 5 * DAY)
    assert strip == before
    assert [e[0] for e in again] == [e[0] for e in strip] and again[3] == [
        105, "success", (start + 5 * DAY).isoformat()]
    # Older than all ten: it does not get in
    assert with_outcome(strip, 99, "failed", start - DAY) == strip


def test_slots_are_ordered_as_times_whoever_wrote_them() -> None:
    # PostgreSQL's backfill writes microseconds, Python's isoformat leaves out zero ones (as
    # text, "09:00:00+00:00" sorts before "09:00:00.000000+00:00"), and a slot may come in
    # another zone: ordered as times, a tie by run id; written in UTC
    written = [[7, "success", "2026-03-02T09:00:00.000000+00:00"],
               [8, "failed", "2026-03-02T09:00:00.500000+00:00"]]
    berlin = datetime(2026, 3, 2, 9, 0, 0, 250000, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    strip = with_outcomes(written, [(9, "partial", berlin),
                                    (10, "missed", datetime(2026, 3, 2, 9, tzinfo=UTC))])
    assert strip == [written[0], [10, "missed", "2026-03-02T09:00:00+00:00"],
                     [9, "partial", "2026-03-02T09:00:00.250000+00:00"], written[1]]


# --- written where runs end --------------------------------------------------------------------

@pytest.fixture
def schedule_id(db_url: str) -> int:
    tenant, report = make_tenant(db_url)
    [made] = add_schedules(db_url, tenant, report, 1, cron="0 9 * * *", next_run_at=NOW + DAY)
    return made


def ended(schedule_id: int, status: RunStatus, slot: datetime, *, test: bool = False) -> int:
    """A run of the schedule for `slot`, taken and ended in `status` as a worker ends it."""
    with session_scope() as session:
        schedule = session.get(Schedule, schedule_id)
        run = create_manual_run(session, schedule, slot, "ana@acme.example",
                                test_recipients=[("email", "qa@acme.example")] if test else None)
        move(session, RunStatus.QUEUED, RunStatus.RUNNING, RUNS.c.id == run.id, started_at=slot)
        assert end_run(session, run, status, slot, None if status == RunStatus.SUCCESS else "why")
        return run.id


def test_each_end_goes_in_the_strip_with_the_status_but_a_test_runs(schedule_id: int) -> None:
    made = {status: ended(schedule_id, status, NOW - (4 - i) * DAY) for i, status in enumerate(
        [RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.SKIPPED])}
    ended(schedule_id, RunStatus.SUCCESS, NOW, test=True)  # newer than all: not in it
    assert strip_of(schedule_id) == [[made[s], s.value, (NOW - (4 - i) * DAY).isoformat()]
                                     for i, s in enumerate(made)]
    with session_scope() as session:
        assert session.get(Schedule, schedule_id).last_status == "skipped"  # not the test's
    # An older slot that ends later goes to its place; twelve in all keep the last ten
    late = ended(schedule_id, RunStatus.FAILED, NOW - 10 * DAY)
    assert strip_of(schedule_id)[0][0] == late
    for day in range(1, 8):
        ended(schedule_id, RunStatus.SUCCESS, NOW + day * DAY)
    strip = strip_of(schedule_id)
    assert len(strip) == RECENT and late not in [e[0] for e in strip]
    slots = [datetime.fromisoformat(e[2]) for e in strip]
    assert slots == sorted(slots) and slots[-1] == NOW + 7 * DAY


def test_the_tick_puts_the_slots_it_misses_in_the_strip_and_nothing_on_time(
    db_url: str
) -> None:
    tenant, report = make_tenant(db_url)
    late = add_schedules(db_url, tenant, report, 3, cron="0 9 * * *",
                         next_run_at=datetime(2026, 3, 2, 9, tzinfo=UTC))
    on_time = add_schedules(db_url, tenant, report, 2, cron="0 12 * * *",
                            next_run_at=datetime(2026, 3, 2, 12, tzinfo=UTC))
    full = [[1000 + i, "success", (NOW - (10 - i) * DAY).isoformat()] for i in range(RECENT)]
    with session_scope() as session:
        session.get(Schedule, late[0]).recent_runs = full  # ten already: the oldest goes
    statements: list[str] = []
    engine = get_engine(db_url)
    listen = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        result = tick(NOW, lambda queued: None)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    assert result.missed == 3
    missed = {r.schedule_id: r for r in runs_of(db_url) if r.status == RunStatus.MISSED}
    slot = datetime(2026, 3, 2, 9, tzinfo=UTC)
    for sid in late:
        entry = [missed[sid].id, "missed", slot.isoformat()]
        assert strip_of(sid) == (full[1:] + [entry] if sid == late[0] else [entry])
    assert [strip_of(sid) for sid in on_time] == [[], []]  # queued, not ended: nothing yet
    # One statement reads the missed schedules' strips; the claim itself reads none
    assert len([s for s in statements if "recent_runs" in s]) == 2  # the read, the write

    # Without a missed slot, no statement of the tick touches a strip
    statements.clear()
    with session_scope() as session:
        session.execute(sa.update(Schedule).where(Schedule.id.in_(on_time))
                        .values(next_run_at=NOW + timedelta(hours=1)))
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        assert len(tick(NOW + timedelta(hours=1), lambda queued: None).queued) == 2
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    assert statements and not [s for s in statements if "recent_runs" in s]


def test_a_resent_run_has_its_entry_replaced(
    db_url: str, videos_file: str, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    bad = "gone@acme.example"
    mail_sink.refuse[bad] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    schedule_id = make_schedule(videos_file, emails=["anna@acme.example", bad])
    with session_scope() as session:
        sent = runs.send_now(session, OPERATOR, schedule_id, now=utcnow(), dispatch=in_process)
    assert sent.status == "partial"
    [(run_id, status, slot)] = strip_of(schedule_id)
    assert (run_id, status) == (sent.run_id, "partial")

    del mail_sink.refuse[bad]
    with session_scope() as session:
        assert runs.resend_failed(session, OPERATOR, sent.run_id, now=utcnow(),
                                  dispatch=in_process).status == "success"
    assert strip_of(schedule_id) == [[sent.run_id, "success", slot]]
