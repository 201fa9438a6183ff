"""Real `dramatiq jobs` workers on Redis: a worker SIGKILLed mid-run costs a minute or
two, not the run; there is still exactly one run row."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from models import migrate
from models.artifacts import run_artifact
from models.db import session_scope, utcnow
from models.runs import FINAL_RUN_STATES, ReportRun, RunStatus
from tests.jobs.helpers import add_schedules

pytestmark = pytest.mark.slow
SLOW_REPORT = {"slug": "slow", "title": "Slow", "sections": [
    {"kind": "kpi", "title": "Takes a while", "sql": "SELECT 1 AS value FROM pg_sleep(6)"}]}


def wait_for(predicate, timeout: float, every: float = 0.2, between=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if between:
            between()
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout} s")


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["dramatiq", "jobs", "--processes", "1", "--threads", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def test_a_run_on_a_killed_worker_is_finished_by_another_within_two_minutes(
    create_pg_database, create_tenant_database, redis_namespace: str
) -> None:
    # Given a tenant whose report runs a slow query
    url = create_pg_database()
    tenant_db = create_tenant_database()
    migrate.upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "HERALD_LEASE_SECONDS": "6",
           "HERALD_REQUEUE_AFTER_SECONDS": "30", "REDIS_URL": os.environ["REDIS_URL"],
           "HERALD_REDIS_NAMESPACE": redis_namespace}
    from models.reports import Report
    from models.tenancy import Tenant

    with session_scope(url) as session:
        tenant = Tenant(slug="acme", name="Acme", datasource_url=tenant_db.url)
        session.add(tenant)
        session.flush()
        report = Report(tenant_id=tenant.id, slug="slow", title="Slow", definition=SLOW_REPORT)
        session.add(report)
        session.flush()
        tenant_id, report_id = tenant.id, report.id
    # Due this minute, next due tomorrow: the test's repeated ticks cannot make a second slot.
    slot = utcnow().replace(second=0, microsecond=0)
    add_schedules(url, tenant_id, report_id, 1, cron=f"{slot.minute} {slot.hour} * * *",
                  next_run_at=slot)

    def run_row() -> ReportRun | None:
        with session_scope(url) as session:
            return session.execute(sa.select(ReportRun)).scalars().first()

    def tick() -> None:
        subprocess.run(["herald", "tick"], env=env, check=True, capture_output=True, timeout=60)

    worker_a = start_worker(env)
    worker_b = None
    try:
        # When the tick enqueues the run and worker A is in the middle of it
        tick()
        wait_for(lambda: (r := run_row()) and r.status == RunStatus.RUNNING, timeout=60)
        kill_group(worker_a)
        killed_at = time.monotonic()
        worker_b = start_worker(env)

        # Then, with the tick running as it would every minute, worker B finishes it
        finished = wait_for(lambda: (r := run_row()) and r.status in FINAL_RUN_STATES and r,
                            timeout=150, every=1.0, between=tick)
        elapsed = time.monotonic() - killed_at
    finally:
        kill_group(worker_a)
        if worker_b is not None:
            kill_group(worker_b, signal.SIGTERM)

    print(f"run recovered {elapsed:.1f} s after the SIGKILL")
    assert elapsed < 120, f"took {elapsed:.0f} s"
    with session_scope(url) as session:
        rows = session.execute(sa.select(ReportRun)).scalars().all()
        assert len(rows) == 1  # one run row for the slot, whatever was redelivered
        assert finished.attempts == 2
        assert "abandoned" not in (finished.error or "")
        assert run_artifact(session, finished.id, "query-result") is not None  # B ran the query
