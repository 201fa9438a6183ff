"""The tick: one run per slot, coalesced outages, MISSED past grace, flagged bad rows,
recovery of lost messages and dead workers. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobs.tick import tick
from models.db import session_scope
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from pipeline.leases import take_run
from tests.jobs.helpers import add_schedules, make_tenant, runs_of

NOW = datetime(2026, 3, 2, 12, 0, 20, tzinfo=UTC)


class Captured:
    """A dispatcher that records what it would have enqueued."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, runs) -> None:
        with self.lock:
            self.runs.extend(runs)


def test_a_due_schedule_gets_one_run_and_its_next_slot(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    [sid] = add_schedules(db_url, tenant, report, 1, cron="0 12 * * *",
                          next_run_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    sent = Captured()
    report_ = tick(NOW, sent)
    assert len(report_.queued) == 1 and sent.runs == report_.queued
    [run] = runs_of(db_url)
    assert (run.schedule_id, run.status, run.scheduled_for) == (sid, RunStatus.QUEUED,
                                                                 datetime(2026, 3, 2, 12, tzinfo=UTC))
    with session_scope(db_url) as session:
        schedule = session.get(Schedule, sid)
        assert schedule.next_run_at == datetime(2026, 3, 3, 12, tzinfo=UTC)
        assert schedule.last_fired_at == datetime(2026, 3, 2, 12, tzinfo=UTC)
    # Ticking again (periodiq duplicates ticks) creates nothing more.
    again = Captured()
    assert tick(NOW, again).queued == [] and again.runs == []
    assert len(runs_of(db_url)) == 1


def test_paused_and_future_schedules_are_left_alone(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 2, cron="0 12 * * *", next_run_at=NOW - timedelta(minutes=1),
                  active=False)
    add_schedules(db_url, tenant, report, 2, cron="0 12 * * *", next_run_at=NOW + timedelta(minutes=1))
    assert tick(NOW, Captured()).queued == []
    assert runs_of(db_url) == []


def test_after_a_three_hour_outage_each_schedule_fires_at_most_once(db_url: str) -> None:
    # Given schedules whose slots kept passing while herald was down for three hours
    tenant, report = make_tenant(db_url)
    down_since = NOW - timedelta(hours=3)
    every5 = add_schedules(db_url, tenant, report, 3, cron="*/5 * * * *", next_run_at=down_since)
    hourly_long_grace = add_schedules(db_url, tenant, report, 2, cron="0 * * * *",
                                      next_run_at=down_since, grace_s=4 * 3600)
    daily_at_nine = add_schedules(db_url, tenant, report, 2, cron="0 9 * * *",
                                  next_run_at=datetime(2026, 3, 2, 9, tzinfo=UTC))
    # When the first tick after the outage runs
    sent = Captured()
    result = tick(NOW, sent)
    runs = runs_of(db_url)
    # Then every schedule has exactly one run: the latest slot, or a MISSED one past its grace
    assert sorted(r.schedule_id for r in runs) == sorted(every5 + hourly_long_grace + daily_at_nine)
    by_schedule = {r.schedule_id: r for r in runs}
    for sid in every5:
        assert by_schedule[sid].scheduled_for == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        assert by_schedule[sid].status == RunStatus.QUEUED
    for sid in hourly_long_grace:
        assert by_schedule[sid].scheduled_for == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    for sid in daily_at_nine:
        assert by_schedule[sid].status == RunStatus.MISSED
        assert "past the 1:00:00 misfire grace; not sent" in by_schedule[sid].error
    assert result.missed == 2
    assert sorted(r for r, _ in sent.runs) == sorted(r.id for r in runs if r.status == RunStatus.QUEUED)
    with session_scope(db_url) as session:
        missed = session.get(Schedule, daily_at_nine[0])
        assert (missed.last_status, missed.next_run_at) == ("missed", datetime(2026, 3, 3, 9, tzinfo=UTC))
    # And nothing is sent twice by later ticks in the same minute
    assert tick(NOW + timedelta(seconds=30), Captured()).queued == []
    assert len(runs_of(db_url)) == len(runs)


def test_a_schedule_whose_stored_cron_no_longer_parses_is_flagged_not_skipped(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    [bad_cron] = add_schedules(db_url, tenant, report, 1, cron="0 9 * *", next_run_at=NOW)
    [bad_zone] = add_schedules(db_url, tenant, report, 1, cron="0 9 * * *", next_run_at=NOW,
                               timezone="Mars/Olympus")
    result = tick(NOW, Captured())
    assert result.flagged == 2 and result.queued == []
    with session_scope(db_url) as session:
        cron_row, zone_row = session.get(Schedule, bad_cron), session.get(Schedule, bad_zone)
        assert cron_row.last_status == "invalid" and "Invalid cron expression" in cron_row.last_error
        assert zone_row.last_status == "invalid" and "Unknown timezone 'Mars/Olympus'" in zone_row.last_error
        assert cron_row.next_run_at is None  # not re-flagged every minute; editing it re-plans


def test_a_dropped_message_is_re_enqueued_by_a_later_tick(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW - timedelta(seconds=20))
    tick(NOW, lambda runs: None)  # the message is lost on the way to the broker
    [run] = runs_of(db_url)
    assert tick(NOW + timedelta(seconds=30), Captured()).requeued == []  # still fresh
    later = Captured()
    result = tick(NOW + timedelta(seconds=90), later)
    assert result.requeued == [(run.id, tenant)] and later.runs == [(run.id, tenant)]


def test_a_run_whose_worker_died_is_re_enqueued_when_its_lease_expires(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW)
    [(run_id, _)] = tick(NOW, Captured()).queued
    assert take_run(run_id, NOW, timedelta(seconds=60))  # a worker takes it, then dies
    assert not take_run(run_id, NOW + timedelta(seconds=5), timedelta(seconds=60))
    assert tick(NOW + timedelta(seconds=59), Captured()).requeued == []
    assert tick(NOW + timedelta(seconds=61), Captured()).requeued == [(run_id, tenant)]
    assert take_run(run_id, NOW + timedelta(seconds=62), timedelta(seconds=60))
    [run] = runs_of(db_url)
    assert (run.status, run.attempts) == (RunStatus.RUNNING, 2)


def test_a_run_that_keeps_dying_is_failed_after_its_attempts(db_url: str, monkeypatch) -> None:
    monkeypatch.setenv("HERALD_MAX_RUN_ATTEMPTS", "2")
    from models.settings import get_settings

    get_settings.cache_clear()
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW)
    [(run_id, _)] = tick(NOW, Captured()).queued
    lease = timedelta(seconds=10)
    assert take_run(run_id, NOW, lease)
    assert tick(NOW + timedelta(seconds=11), Captured()).requeued == [(run_id, tenant)]
    assert take_run(run_id, NOW + timedelta(seconds=12), lease)
    assert tick(NOW + timedelta(seconds=30), Captured()).requeued == []
    [run] = runs_of(db_url)
    assert run.status == RunStatus.FAILED and run.error == "abandoned after 2 attempts"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_racing_ticks_create_exactly_one_run_per_due_schedule(
    backend: str, request: pytest.FixtureRequest, tmp_path, monkeypatch
) -> None:
    # Given 2,000 due schedules (among 500 that are not due) on a fresh database
    if backend == "postgresql":
        from models import migrate

        url = request.getfixturevalue("create_pg_database")()
        migrate.upgrade(url)
    else:
        import shutil

        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "race.db")
        url = f"sqlite:///{tmp_path / 'race.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HERALD_TICK_BATCH_SIZE", "200")
    from models.settings import get_settings

    get_settings.cache_clear()
    tenant, report = make_tenant(url)
    due = add_schedules(url, tenant, report, 2000, cron="*/5 * * * *", next_run_at=NOW - timedelta(minutes=1))
    add_schedules(url, tenant, report, 500, cron="*/5 * * * *", next_run_at=NOW + timedelta(minutes=4))

    # When two ticks race on separate connections
    results, barrier = {}, threading.Barrier(2)

    def race(name: str) -> None:
        barrier.wait()
        results[name] = tick(NOW, Captured())

    threads = [threading.Thread(target=race, args=(n,)) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]

    # Then there are exactly 2,000 runs, one per due schedule, each enqueued once
    with session_scope(url) as session:
        count, distinct = session.execute(sa.select(
            sa.func.count(), sa.func.count(sa.distinct(ReportRun.schedule_id)))).one()
    assert (count, distinct) == (2000, 2000)
    queued = [r for res in results.values() for r, _ in res.queued]
    assert len(queued) == len(set(queued)) == 2000
    with session_scope(url) as session:
        runs_schedules = set(session.execute(sa.select(ReportRun.schedule_id)).scalars())
    assert runs_schedules == set(due)
    get_settings.cache_clear()


def test_the_tick_deletes_artifacts_past_their_retention(db_url: str) -> None:
    from models.artifacts import store_artifact
    from models.runs import Artifact

    with session_scope() as session:
        for kind, stored_at in (("old", NOW - timedelta(days=31)), ("recent", NOW - timedelta(days=29))):
            store_artifact(session, run_id=None, kind=kind, filename=f"{kind}.csv",
                           media_type="text/csv", source=b"a,b\n1,2\n", now=stored_at)
    report = tick(NOW, lambda runs: None)
    with session_scope() as session:
        kept = session.execute(sa.select(Artifact.kind)).scalars().all()
    assert report.purged == 1 and kept == ["recent"]
