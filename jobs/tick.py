"""The tick: decide in the database what is due, claim it once, enqueue after commit.

periodiq only triggers the tick; it loses and duplicates triggers, so nothing
here depends on being called exactly once a minute. Each step is a function
that takes `now`, so tests can replay an outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from jobs import metrics
from jobs.outbox import record_end
from models import cron
from models.artifacts import purge_expired
from models.db import insert_ignoring_conflicts, session_scope
from models.errors import InvalidInput
from models.health import host_name, record_tick
from models.runs import ReportRun, RunStatus, note_changes, run_change
from models.schedules import Schedule
from models.settings import get_settings

log = logging.getLogger("herald.tick")
RUNS = ReportRun.__table__
SCHEDULES = Schedule.__table__

# (run id, tenant id) pairs, handed to the dispatcher once their transaction committed.
QueuedRun = tuple[int, int]
Dispatch = Callable[[Sequence[QueuedRun]], None]


@dataclass
class TickReport:
    """What one tick did, for logs, metrics and tests."""

    queued: list[QueuedRun] = field(default_factory=list)
    missed: int = 0
    flagged: int = 0
    requeued: list[QueuedRun] = field(default_factory=list)
    purged: int = 0          # artifacts past their retention, deleted


@dataclass
class _Batch:
    queued: list[QueuedRun]
    missed: int
    flagged: int
    claimed: int


def claim_due_batch(session: Session, now: datetime, limit: int) -> _Batch:
    """Claim up to `limit` due schedules, create their runs, advance their next_run_at.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent ticks split the work.
    SQLite: the session began with the write lock (`session_scope(claim=True)`).
    Either way the unique (schedule, slot) key makes a second run impossible.
    """
    due = session.execute(
        sa.select(SCHEDULES.c.id, SCHEDULES.c.tenant_id, SCHEDULES.c.cron, SCHEDULES.c.timezone,
                  SCHEDULES.c.next_run_at, SCHEDULES.c.misfire_grace_seconds)
        .where(SCHEDULES.c.active.is_(True), SCHEDULES.c.next_run_at <= now)
        .order_by(SCHEDULES.c.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    runs: list[dict] = []
    fired: list[dict] = []    # next_run_at advances, last_fired_at = slot
    notes: list[dict] = []    # missed or unplannable: the reason goes on the schedule
    missed = flagged = 0
    for row in due:
        try:
            plan = cron.plan_due_slot(row.cron, row.timezone, row.next_run_at, now,
                                      timedelta(seconds=row.misfire_grace_seconds))
        except InvalidInput as exc:
            # Flag it where operators look; never skip silently, never retry every minute.
            flagged += 1
            log.error("schedule %s cannot be planned: %s", row.id, exc)
            notes.append({"b_id": row.id, "b_next": None, "b_status": "invalid", "b_error": str(exc)})
            continue
        run = {"schedule_id": row.id, "tenant_id": row.tenant_id, "scheduled_for": plan.slot,
               "manual": False, "attempts": 0, "created_at": now}
        if plan.missed:
            missed += 1
            error = (f"slot {plan.slot.isoformat()} was claimed {now - plan.slot} late, past "
                     f"the {timedelta(seconds=row.misfire_grace_seconds)} misfire grace; not sent")
            runs.append({**run, "status": RunStatus.MISSED, "queued_at": None,
                         "finished_at": now, "error": error})
            notes.append({"b_id": row.id, "b_next": plan.next_run_at, "b_status": "missed",
                          "b_error": error})
        else:
            runs.append({**run, "status": RunStatus.QUEUED, "queued_at": now,
                         "finished_at": None, "error": None})
            fired.append({"b_id": row.id, "b_next": plan.next_run_at, "b_slot": plan.slot})
    queued: list[QueuedRun] = []
    if runs:
        # executemany form: compiled once, sent in batches ("insertmanyvalues").
        created = session.execute(
            insert_ignoring_conflicts(session, RUNS, "schedule_id", "scheduled_for")
            .returning(RUNS.c.id, RUNS.c.tenant_id, RUNS.c.status, RUNS.c.schedule_id),
            runs,
        ).all()
        queued = [(r.id, r.tenant_id) for r in created if r.status == RunStatus.QUEUED]
        # One log line per run made (queued or missed), after the commit; a conflict made none.
        note_changes(session, [run_change(r.id, None, r.status, r.schedule_id) for r in sorted(created)])
    by_id = SCHEDULES.c.id == sa.bindparam("b_id")
    if fired:
        session.execute(SCHEDULES.update().where(by_id).values(
            next_run_at=sa.bindparam("b_next"), last_fired_at=sa.bindparam("b_slot")), fired)
    if notes:
        session.execute(SCHEDULES.update().where(by_id).values(
            next_run_at=sa.bindparam("b_next"), last_status=sa.bindparam("b_status"),
            last_error=sa.bindparam("b_error")), notes)
    return _Batch(queued=queued, missed=missed, flagged=flagged, claimed=len(due))


def requeue_stale_runs(session: Session, now: datetime, limit: int) -> list[QueuedRun]:
    """Runs queued but never picked up, or whose worker's lease expired, go back to the queue."""
    settings = get_settings()
    stale = session.execute(
        sa.select(RUNS.c.id, RUNS.c.tenant_id, RUNS.c.attempts, RUNS.c.status, RUNS.c.schedule_id)
        .where(sa.or_(
            sa.and_(RUNS.c.status == RunStatus.QUEUED,
                    RUNS.c.queued_at < now - timedelta(seconds=settings.requeue_after_seconds)),
            sa.and_(RUNS.c.status == RunStatus.RUNNING, RUNS.c.lease_expires_at < now),
        ))
        .order_by(RUNS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    exhausted = [r for r in stale if r.attempts >= settings.max_run_attempts]
    retry = [r for r in stale if r.attempts < settings.max_run_attempts]
    if exhausted:
        for run in exhausted:
            finish_abandoned(session, run.id, now, settings.max_run_attempts)
    if retry:
        session.execute(
            RUNS.update().where(RUNS.c.id.in_([r.id for r in retry]))
            .values(status=RunStatus.QUEUED, queued_at=now, lease_expires_at=None)
        )
        log.warning("re-enqueued %d stale runs: %s", len(retry), [r.id for r in retry])
        note_changes(session, [run_change(r.id, r.status, RunStatus.QUEUED, r.schedule_id)
                               for r in retry if r.status != RunStatus.QUEUED])
    return [(r.id, r.tenant_id) for r in retry]


def finish_abandoned(session: Session, run_id: int, now: datetime, attempts: int) -> None:
    """A run no worker finished in `attempts` tries ends FAILED, with its last error kept."""
    run = session.get(ReportRun, run_id)
    reason = f"abandoned after {attempts} attempts" + (f"; last error: {run.error}" if run.error else "")
    record_end(session, run, RunStatus.FAILED, now, reason)


def tick(now: datetime, dispatch: Dispatch, url: str | None = None) -> TickReport:
    """One dispatcher tick: claim every due schedule in batches, then recover stale runs."""
    limit = get_settings().tick_batch_size
    report = TickReport()
    started = time.monotonic()  # measures this tick's length only; `now` stays the tick's instant
    claimed = 0
    while True:
        with session_scope(url, claim=True) as session:
            batch = claim_due_batch(session, now, limit)
        dispatch(batch.queued)  # only after the commit: a message never names an uncommitted run
        report.queued += batch.queued
        report.missed += batch.missed
        report.flagged += batch.flagged
        claimed += batch.claimed
        if batch.claimed < limit:
            break
    with session_scope(url, claim=True) as session:
        report.requeued = requeue_stale_runs(session, now, limit)
    dispatch(report.requeued)
    with session_scope(url) as session:  # retention: whatever expired since the last tick
        report.purged = purge_expired(session, now)
    _write_heartbeat(now, int((time.monotonic() - started) * 1000), claimed, url)
    metrics.observe_tick(now, time.monotonic() - started, report.flagged)
    if report.queued or report.missed or report.flagged or report.requeued or report.purged:
        log.info("tick at %s: queued %d, missed %d, flagged %d, re-enqueued %d, purged %d",
                 now.isoformat(), len(report.queued), report.missed, report.flagged,
                 len(report.requeued), report.purged)
    return report


def _write_heartbeat(now: datetime, duration_ms: int, claimed: int, url: str | None) -> None:
    """Overwrite this host's heartbeat; a failure is logged, never undoes the tick's work."""
    try:
        with session_scope(url) as session:
            record_tick(session, host=host_name(), started_at=now,
                        finished_at=now + timedelta(milliseconds=duration_ms),
                        duration_ms=duration_ms, claimed=claimed)
    except sa.exc.SQLAlchemyError:
        log.exception("the tick at %s could not write its heartbeat", now.isoformat())
