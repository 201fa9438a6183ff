"""A worker's hold on a run: taking it under a lease, keeping the lease while a stage works,
and handing the run back.

Taking is a move (`pipeline.lifecycle.move`) only one worker can win: QUEUED → RUNNING, or
RUNNING → RUNNING once the holder's lease has expired (its worker died). A run that has used
up HERALD_MAX_RUN_ATTEMPTS is not taken; the tick ends it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlmodel import Session

from models.db import session_scope, utcnow
from models.runs import ReportRun, RunStatus
from models.settings import get_settings
from pipeline.lifecycle import move

log = logging.getLogger("herald.leases")
RUNS = ReportRun.__table__


def lease_length() -> timedelta:
    return timedelta(seconds=get_settings().lease_seconds)


def take_run(run_id: int, now: datetime, lease: timedelta) -> bool:
    """Take a queued run, or one whose lease expired, for this worker; False if another has it
    (or it has ended, or used up its attempts)."""
    with session_scope() as session:
        return take(session, run_id, now, lease)


def take(session: Session, run_id: int, now: datetime, lease: timedelta) -> bool:
    """`take_run` in the caller's transaction: the run is this worker's once it commits."""
    this = (RUNS.c.id == run_id, RUNS.c.attempts < get_settings().max_run_attempts)
    taken = dict(lease_expires_at=now + lease, started_at=now, attempts=RUNS.c.attempts + 1)
    if move(session, RunStatus.QUEUED, RunStatus.RUNNING, *this, **taken):
        return True
    return bool(move(session, RunStatus.RUNNING, RunStatus.RUNNING, *this,
                     RUNS.c.lease_expires_at < now, **taken))


def release_run(run_id: int, now: datetime, error: str) -> None:
    """Give a run back to the queue after an unexpected error, keeping the error for operators."""
    with session_scope() as session:
        move(session, RunStatus.RUNNING, RunStatus.QUEUED, RUNS.c.id == run_id, queued_at=now,
             lease_expires_at=None, error=error)


def renew_lease(run_id: int, now: datetime, lease: timedelta) -> bool:
    """Extend a running run's lease; False if the run is no longer running."""
    with session_scope() as session:
        result = session.execute(
            RUNS.update().where(RUNS.c.id == run_id, RUNS.c.status == RunStatus.RUNNING)
            .values(lease_expires_at=now + lease))
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


def still_running(run_id: int) -> bool:
    """Whether the run is still held by a worker (a later stage's message may come after it ended)."""
    with session_scope() as session:
        return session.get(ReportRun, run_id).status == RunStatus.RUNNING
