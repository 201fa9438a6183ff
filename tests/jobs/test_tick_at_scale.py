"""The top of the hour: tens of thousands of schedules due at once, on PostgreSQL.

- A tick killed with SIGKILL part-way through its slices loses nothing and duplicates
  nothing: the next tick claims the rest and re-enqueues the committed runs whose
  messages never left, and every due slot has exactly one run.
- A tick whose time limit is short hands the rest to a continuation before the limit:
  real Dramatiq workers (TimeLimit middleware on) never kill one, and every due schedule
  is claimed once. The pipeline behind the tick is out of scope here: its dispatch is
  replaced by a recorder (the one seam).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
import sqlalchemy as sa

from jobs import actors
from jobs.shell import drain
from jobs.tick import tick
from models.db import get_engine
from models.settings import get_settings
from tests.conftest import REDIS_TEST_URL
from tests.jobs.helpers import make_tenant

NOW = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
SLOT = NOW.replace(second=0)


@pytest.fixture
def pg(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.conftest import _truncate_all

    _truncate_all(pg_url)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    yield pg_url
    get_settings.cache_clear()


def add_due(url: str, count: int) -> None:
    """`count` daily 09:00 schedules in 50 tenants, all due at SLOT."""
    tenant, report = make_tenant(url)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, timezone, formats, channels, params,
                                  active, next_run_at, misfire_grace_seconds, created_at)
            SELECT :tenant, :report, '0 9 * * *', 'UTC', '["pdf"]', '["email"]', '{}', true,
                   :slot, 3600, now()
            FROM generate_series(1, :count)"""), {"tenant": tenant, "report": report, "slot": SLOT,
                                                  "count": count})
        conn.execute(sa.text("ANALYZE schedule"))


def runs_per_schedule(url: str) -> dict[int, int]:
    """How many schedules have 0, 1, 2… runs."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT n, count(*) FROM (
                SELECT count(r.id) AS n FROM schedule s LEFT JOIN report_run r ON r.schedule_id = s.id
                GROUP BY s.id) per GROUP BY n""")).all()
    return dict(rows)


def count_runs(url: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM report_run")).scalar_one()


def wait_for_backends_to_end(url: str, application: str) -> None:
    """PostgreSQL rolls back a killed client's transaction once it notices the socket closed."""
    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        for _ in range(500):
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                [application]).fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the killed tick's connection is still open after 10 s")


def test_a_tick_killed_mid_claim_loses_and_duplicates_nothing(
    pg: str, redis_client: redis.Redis, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = 40_000
    add_due(pg, due)
    application = f"herald-tick-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": pg, "REDIS_URL": REDIS_TEST_URL, "PGAPPNAME": application,
           "HERALD_REDIS_NAMESPACE": redis_namespace, "HERALD_TICK_BATCH_SIZE": "500"}

    # Given a tick that has committed some slices of the claim (and enqueued their messages)
    tick_process = subprocess.Popen(["herald", "tick", "--now", NOW.isoformat()], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
    deadline = time.monotonic() + 120
    while count_runs(pg) < 2_000:
        assert tick_process.poll() is None, "the tick ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # When it is killed part-way
    os.killpg(tick_process.pid, signal.SIGKILL)
    tick_process.wait()
    wait_for_backends_to_end(pg, application)
    made_by_killed = count_runs(pg)
    assert 0 < made_by_killed < due, made_by_killed  # it really stopped half-way
    queue = f"{redis_namespace}:{actors.query_stage.queue_name}"
    sent_by_killed = {json.loads(m)["args"][0] for m in redis_client.hvals(f"{queue}.msgs")}
    assert sent_by_killed  # some messages had left before the kill

    # Then the next tick, after the re-enqueue delay, claims the rest and recovers the runs
    # whose messages were lost with the process
    dispatched: list[int] = []
    report = tick(NOW + timedelta(minutes=3), lambda runs: dispatched.extend(r for r, _ in runs))

    assert runs_per_schedule(pg) == {1: due}  # exactly one run per due slot, none missing
    assert len(report.queued) == due - made_by_killed
    with get_engine(pg).connect() as conn:
        all_runs = set(conn.execute(sa.text("SELECT id FROM report_run")).scalars())
        assert conn.execute(sa.text("SELECT count(*) FROM schedule WHERE next_run_at <= :now"),
                            {"now": NOW}).scalar_one() == 0
    assert all_runs == sent_by_killed | set(dispatched)  # every run has a message: none lost


def test_a_tick_with_a_short_time_limit_hands_over_and_is_never_killed(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = 12_000
    add_due(pg, due)
    # Small slices: 240 of them take longer than the 0.5 s budget however quick the machine
    # (61 slices of 200 once fitted in it), and each stays far below the 1 s limit when it is slow.
    monkeypatch.setenv("HERALD_TICK_BATCH_SIZE", "50")
    get_settings.cache_clear()
    # The seam: record what the tick dispatches instead of running each run's pipeline.
    dispatched: list[int] = []
    monkeypatch.setattr(actors, "dispatch_runs", lambda runs: dispatched.extend(r for r, _ in runs))
    reports = []
    monkeypatch.setattr(actors, "tick", lambda *a, **k: reports.append(tick(*a, **k)) or reports[-1])
    monkeypatch.setitem(actors.tick_actor.options, "time_limit", 1000)  # ms
    monkeypatch.setattr(actors, "utcnow", lambda: NOW)

    actors.tick_actor.send()
    drain(timeout_s=300)  # raises if a tick message failed, e.g. killed by its time limit

    assert runs_per_schedule(pg) == {1: due}
    assert sorted(dispatched) == sorted(set(dispatched)) and len(dispatched) == due
    assert len(reports) >= 2 and all(r.handed_over for r in reports[:-1])
    assert not reports[-1].handed_over


def test_runs_waiting_behind_a_backlog_are_not_enqueued_again(
    pg: str, redis_broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 300 runs queued by a tick whose messages still wait on Redis (no worker yet)
    add_due(pg, 300)
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    get_settings.cache_clear()
    first = tick(NOW, actors.dispatch_runs)
    assert len(first.queued) == 300 and actors.query_backlog(redis_broker)

    # When the next ticks come after the re-enqueue delay, with the queue still holding them
    later = tick(NOW + timedelta(minutes=5), actors.dispatch_runs,
                 backlog=actors.query_backlog(redis_broker))
    # Then none is enqueued again: they are waiting, not lost
    assert later.requeued == []
    # ... and once the queue is empty (the messages were lost), they are
    redis_broker.flush_all()
    assert not actors.query_backlog(redis_broker)
    recovered = tick(NOW + timedelta(minutes=6), actors.dispatch_runs,
                     backlog=actors.query_backlog(redis_broker))
    assert len(recovered.requeued) == 300
