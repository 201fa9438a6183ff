"""The run outbox: creating runs, claiming them under a lease, finishing them.

A claim is a conditional UPDATE that only one worker can win; a lease that is
not renewed (the worker died) lets the tick hand the run to another worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from jobs.autopause import pause_if_failing
from models.db import session_scope, utcnow
from models.runs import ReportRun, RunStatus, transition
from models.schedules import Schedule
from models.settings import get_settings

log = logging.getLogger("herald.outbox")
RUNS = ReportRun.__table__


def create_manual_run(session: Session, schedule: Schedule, now: datetime) -> ReportRun:
    """A run outside the schedule's cron ("send now"), queued like any other."""
    run = ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, scheduled_for=now,
                    manual=True, status=RunStatus.QUEUED, queued_at=now)
    session.add(run)
    session.flush()
    return run


def claim_run(run_id: int, now: datetime, lease: timedelta) -> bool:
    """Take a queued run, or one whose lease expired, for this worker. False if another has it.

    The WHERE clause is the QUEUED -> RUNNING move of `RUN_MOVES`, done atomically (plus
    taking over an expired lease). A run that has used up its attempts is not claimed;
    the tick fails it.
    """
    with session_scope() as session:
        result = session.execute(
            RUNS.update()
            .where(RUNS.c.id == run_id, RUNS.c.attempts < get_settings().max_run_attempts)
            .where(sa.or_(RUNS.c.status == RunStatus.QUEUED,
                          sa.and_(RUNS.c.status == RunStatus.RUNNING,
                                  RUNS.c.lease_expires_at < now)))
            .values(status=RunStatus.RUNNING, lease_expires_at=now + lease,
                    started_at=now, attempts=RUNS.c.attempts + 1)
        )
        return result.rowcount == 1


def release_run(run_id: int, now: datetime, error: str) -> None:
    """Give a run back to the queue after an unexpected error, keeping the error for operators."""
    with session_scope() as session:
        session.execute(
            RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status == RunStatus.RUNNING)
            .values(status=RunStatus.QUEUED, queued_at=now, lease_expires_at=None, error=error)
        )


def renew_lease(run_id: int, now: datetime, lease: timedelta) -> bool:
    """Extend a running run's lease; False if the run is no longer running."""
    with session_scope() as session:
        result = session.execute(
            RUNS.update()
            .where(RUNS.c.id == run_id, RUNS.c.status == RunStatus.RUNNING)
            .values(lease_expires_at=now + lease)
        )
        return result.rowcount == 1


@contextlib.contextmanager
def holding_lease(run_id: int, lease: timedelta) -> Iterator[None]:
    """Renew the run's lease in the background while a stage works on it."""
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease.total_seconds() / 3):
            try:
                renew_lease(run_id, utcnow(), lease)
            except Exception:  # a missed renewal is retried; the lease has slack for it
                log.warning("could not renew the lease of run %s", run_id, exc_info=True)

    thread = threading.Thread(target=heartbeat, name=f"lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def note_error(run_id: int, error: str) -> None:
    """Keep a running run's latest error, so an abandoned run says why."""
    with session_scope() as session:
        session.execute(RUNS.update().where(RUNS.c.id == run_id).values(error=error))


def record_end(session: Session, run: ReportRun, status: RunStatus, now: datetime,
               error: str | None) -> None:
    """Move a run to its end state and mirror it on its schedule (unless a newer run did).

    A test run ("send a test to…") is never mirrored: the schedule's last status stays its own.
    """
    transition(run, status)
    run.finished_at, run.error, run.lease_expires_at = now, error, None
    schedule = session.get(Schedule, run.schedule_id)
    newest = schedule.last_fired_at is None or run.scheduled_for >= schedule.last_fired_at
    if newest and not run.test:
        schedule.last_status, schedule.last_error = status.value, error
    log.info("run %s finished: %s%s", run.id, status, f" ({error})" if error else "")
    pause_if_failing(session, run, now)  # HERALD_AUTOPAUSE_AFTER FAILED in a row: paused


def finish_run(run_id: int, status: RunStatus, now: datetime, error: str | None = None) -> None:
    with session_scope() as session:
        record_end(session, session.get(ReportRun, run_id, with_for_update=True), status, now, error)
