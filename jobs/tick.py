"""The tick: decide in the database what is due, claim it once, enqueue after commit.

periodiq only triggers the tick; it loses and duplicates triggers, so nothing
here depends on being called exactly once a minute. Each step is a function
that takes `now`, so tests can replay an outage.

A tick works in slices (`HERALD_TICK_BATCH_SIZE` schedules each, see `jobs.claim`), each
committed and then enqueued. Given a time budget, it stops before a slice might not fit
and hands the rest to a continuation (another tick message), so its time limit never
kills it half-way. A tick killed anyway loses nothing: an uncommitted slice rolls back
and is claimed again; a committed slice's runs whose messages never left are re-enqueued
by `requeue_stale_runs`; the unique (schedule, slot) key forbids a second run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from jobs.claim import Planner, claim_slice
from jobs.dispatch import QueuedRun
from models.artifacts import purge_expired
from models.db import get_engine, session_scope
from models.health import host_name, record_tick
from models.idempotency import purge_idempotency_keys
from models.runs import ReportRun, RunStatus
from models.settings import get_settings
from pipeline import metrics
from pipeline.lifecycle import end_run, move
from pipeline.sharing import purge_finished as purge_finished_shares

log = logging.getLogger("herald.tick")
RUNS = ReportRun.__table__

Dispatch = Callable[[Sequence[QueuedRun]], None]
__all__ = ["Dispatch", "QueuedRun", "TickReport", "requeue_stale_runs", "tick"]


@dataclass
class TickReport:
    """What one tick did, for logs, metrics and tests."""

    queued: list[QueuedRun] = field(default_factory=list)
    missed: int = 0
    flagged: int = 0
    requeued: list[QueuedRun] = field(default_factory=list)
    purged: int = 0          # artifacts past their retention, deleted
    slices: int = 0
    handed_over: bool = False  # the budget ran out with schedules still due: a continuation follows


def requeue_stale_runs(session: Session, now: datetime, limit: int,
                       queued: bool = True) -> list[QueuedRun]:
    """Runs queued but never picked up, or whose worker's lease expired, go back to the queue.

    `queued=False` leaves QUEUED runs alone: while the query queues hold a backlog, a run
    waiting longer than HERALD_REQUEUE_AFTER_SECONDS is most likely still in line, not lost."""
    settings = get_settings()
    lost = [sa.and_(RUNS.c.status == RunStatus.RUNNING, RUNS.c.lease_expires_at < now)]
    if queued:
        lost.append(sa.and_(RUNS.c.status == RunStatus.QUEUED,
                            RUNS.c.queued_at < now - timedelta(seconds=settings.requeue_after_seconds)))
    stale = session.execute(
        sa.select(RUNS.c.id, RUNS.c.tenant_id, RUNS.c.attempts, RUNS.c.status, RUNS.c.schedule_id)
        .where(sa.or_(*lost))
        .order_by(RUNS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    exhausted = [r for r in stale if r.attempts >= settings.max_run_attempts]
    retry = [r for r in stale if r.attempts < settings.max_run_attempts]
    for run in exhausted:
        abandon(session, run.id, now, settings.max_run_attempts)
    if retry:
        # A dead worker's run goes back to the queue; a run still queued is sent again.
        held = [r.id for r in retry if r.status == RunStatus.RUNNING]
        waiting = [r.id for r in retry if r.status == RunStatus.QUEUED]
        if held:
            move(session, RunStatus.RUNNING, RunStatus.QUEUED, RUNS.c.id.in_(held), queued_at=now,
                 lease_expires_at=None)
        if waiting:
            session.execute(RUNS.update().where(RUNS.c.id.in_(waiting), RUNS.c.status == RunStatus.QUEUED)
                            .values(queued_at=now))
        log.warning("re-enqueued %d stale runs: %s", len(retry), [r.id for r in retry])
    return [(r.id, r.tenant_id) for r in retry]


def abandon(session: Session, run_id: int, now: datetime, attempts: int) -> None:
    """A run no worker ended in `attempts` tries ends FAILED, with its last error kept."""
    run = session.get(ReportRun, run_id)
    reason = f"abandoned after {attempts} attempts" + (f"; last error: {run.error}" if run.error else "")
    end_run(session, run, RunStatus.FAILED, now, reason)


def tick(now: datetime, dispatch: Dispatch, url: str | None = None, *,
         budget_s: float | None = None, hand_over: Callable[[], None] | None = None,
         backlog: bool = False) -> TickReport:
    """One dispatcher tick: claim every due schedule in slices, then recover stale runs.

    With `budget_s` and `hand_over`, a tick that would likely overrun its budget with one
    more slice calls `hand_over` (which sends the continuation) and returns; the
    continuation claims the rest, recovers stale runs and purges. `backlog` (the query
    queues hold messages) keeps QUEUED runs from being re-enqueued (see `requeue_stale_runs`).
    """
    limit = get_settings().tick_batch_size
    report = TickReport()
    started = time.monotonic()  # measures this tick's length only; `now` stays the tick's instant
    planner = Planner(now)
    claimed = 0
    sender = _Sender(dispatch, background=get_engine(url).dialect.name == "postgresql")
    try:
        while True:
            slice_started = time.monotonic()
            with session_scope(url, locking=True) as session:
                batch = claim_slice(session, now, limit, planner)
            sender.send(batch.queued)  # only after the commit: a message never names an uncommitted run
            report.queued += batch.queued
            report.missed += batch.missed
            report.flagged += batch.flagged
            report.slices += 1
            claimed += batch.claimed
            if batch.claimed < limit:
                break
            if budget_s is not None and hand_over is not None:
                spent, last = time.monotonic() - started, time.monotonic() - slice_started
                if spent + 2 * last > budget_s:
                    report.handed_over = True
                    break
        sender.finish()
    finally:
        sender.close()
    if report.handed_over:
        hand_over()
    else:
        while True:  # a slice at a time too: a killed tick may have left thousands queued
            with session_scope(url, locking=True) as session:
                requeued = requeue_stale_runs(session, now, limit, queued=not backlog)
            dispatch(requeued)
            report.requeued += requeued
            if len(requeued) < limit:
                break
        with session_scope(url) as session:  # retention: whatever expired since the last tick
            report.purged = purge_expired(session, now)
            purge_finished_shares(session, now)
            purge_idempotency_keys(session, now)
    _write_heartbeat(now, int((time.monotonic() - started) * 1000), claimed, url)
    metrics.observe_tick(now, time.monotonic() - started, report.flagged)
    if report.queued or report.missed or report.flagged or report.requeued or report.purged:
        log.info("tick at %s: queued %d, missed %d, flagged %d, re-enqueued %d, purged %d in %d "
                 "slices%s", now.isoformat(), len(report.queued), report.missed, report.flagged,
                 len(report.requeued), report.purged, report.slices,
                 "; the rest is handed to a continuation" if report.handed_over else "")
    return report


class _Sender:
    """Hands each committed slice's runs to `dispatch`. With `background` (PostgreSQL), on one
    thread of its own, so the next slice's SQL overlaps this slice's enqueue; at most one slice
    waits, and an error is raised by the next `send` or by `finish`. SQLite's embedded
    dispatch runs the pipeline against the same file, so there it stays in line."""

    def __init__(self, dispatch: Dispatch, background: bool) -> None:
        self.dispatch = dispatch
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tick-send") if background else None
        self.pending: Future | None = None

    def send(self, runs: Sequence[QueuedRun]) -> None:
        if self.pool is None:
            self.dispatch(runs)
            return
        self._wait()
        self.pending = self.pool.submit(self.dispatch, runs)

    def finish(self) -> None:
        """Wait for the last slice's dispatch; raise its error."""
        if self.pool is not None:
            self._wait()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()


def _write_heartbeat(now: datetime, duration_ms: int, claimed: int, url: str | None) -> None:
    """Overwrite this host's heartbeat; a failure is logged, never undoes the tick's work."""
    try:
        with session_scope(url) as session:
            record_tick(session, host=host_name(), started_at=now,
                        finished_at=now + timedelta(milliseconds=duration_ms),
                        duration_ms=duration_ms, claimed=claimed)
    except sa.exc.SQLAlchemyError:
        log.exception("the tick at %s could not write its heartbeat", now.isoformat())
