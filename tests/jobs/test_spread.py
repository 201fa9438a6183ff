"""Spreading: a schedule runs at its own second within a window after its slot, the same
second every time; its runs still belong to the slot. Off by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from jobs.tick import tick
from models.db import session_scope
from models.definition import parse_definition
from models.runs import ReportRun
from models.schedules import Schedule
from models.tenancy import Tenant
from services import schedules
from services.access import OPERATOR
from tests.seeding import add_schedule, add_tenant, save_report, set_spread

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SLOT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORT = {"slug": "daily", "title": "Daily",
          "sections": [{"kind": "kpi", "title": "One", "sql": "SELECT 1 AS value"}]}


def make(count: int, spread: int | None = None, tenant_spread: int = 0) -> list[int]:
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme", "UTC")
        save_report(session, tenant, parse_definition(REPORT))
        if tenant_spread:
            set_spread(session, tenant, tenant_spread)
        return [add_schedule(session, tenant, "daily", now=NOW, cron_expr="0 9 * * *",
                             emails=["a@acme.example"], spread_seconds=spread).id
                for _ in range(count)]


def next_runs() -> dict[int, datetime]:
    with session_scope() as session:
        return {s.id: s.next_run_at for s in session.exec(select(Schedule))}


def test_off_by_default_every_schedule_is_due_on_its_slot(db_url: str) -> None:
    make(5)
    assert set(next_runs().values()) == {SLOT}


def test_each_schedule_has_its_own_second_in_the_window_and_keeps_it(db_url: str) -> None:
    ids = make(120, spread=600)
    first = next_runs()
    offsets = {sid: (at - SLOT).total_seconds() for sid, at in first.items()}
    assert all(0 <= o < 600 and o == int(o) for o in offsets.values())
    assert len(set(offsets.values())) > 100  # spread out, not bunched

    # The same second after an edit, and after a pause and a resume
    with session_scope() as session:
        schedules.save_schedule(session, OPERATOR, session.get(Schedule, ids[0]).tenant_id,
                                schedules.ScheduleValues(report="daily", cron="0 9 * * *",
                                                         emails=("b@acme.example",),
                                                         spread_seconds=600),
                                now=NOW, schedule_id=ids[0])
        schedules.pause(session, OPERATOR, ids[1], now=NOW)
        schedules.resume(session, OPERATOR, ids[1], now=NOW + timedelta(minutes=1))
    assert next_runs() == first


def test_the_tick_claims_each_at_its_second_and_the_run_keeps_the_slot(db_url: str) -> None:
    ids = make(60, spread=600)
    planned = next_runs()
    early = {sid for sid, at in planned.items() if at <= SLOT + timedelta(seconds=90)}
    assert 0 < len(early) < len(ids)

    queued = []
    tick(SLOT + timedelta(seconds=90), queued.extend)
    with session_scope() as session:
        claimed = {r.schedule_id for r in session.exec(select(ReportRun))}
    assert claimed == early

    tick(SLOT + timedelta(minutes=10), queued.extend)
    with session_scope() as session:
        runs = session.exec(select(ReportRun)).all()
        assert sorted(r.schedule_id for r in runs) == sorted(ids)  # one run each
        assert {r.scheduled_for for r in runs} == {SLOT}              # the slot, not the second
    # and each is due at the same second after tomorrow's slot
    assert next_runs() == {sid: at + timedelta(days=1) for sid, at in planned.items()}
    assert len({run for run, _ in queued}) == len(ids)  # (the early ones were also re-enqueued)


def test_a_tenant_spread_moves_the_schedules_that_follow_it(db_url: str) -> None:
    following = make(1)[0]
    with session_scope() as session:
        acme = session.get(Tenant, session.get(Schedule, following).tenant_id)
        own = add_schedule(session, acme, "daily", now=NOW, cron_expr="0 9 * * *",
                           emails=["a@acme.example"], spread_seconds=0).id
        assert set_spread(session, acme, 1800) == 1
    planned = next_runs()
    assert planned[own] == SLOT
    assert SLOT <= planned[following] < SLOT + timedelta(seconds=1800)
