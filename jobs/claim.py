"""Claiming one slice of due schedules: lock them, plan their slots, write their runs.

A slice is one transaction. Its cost follows what it claims, with no step per schedule
that a set can do:

- the due schedules are locked with `FOR UPDATE SKIP LOCKED` over `ix_schedule_due`
  (concurrent ticks split the work; SQLite holds the write lock instead);
- croniter plans once per (expression, timezone, due time, grace): at the top of the hour,
  thousands of schedules share a handful of plans (`Planner`);
- on PostgreSQL the rows stay in the database: one statement writes every run and one
  advances every schedule (`jobs.claim_postgres`); SQLite, the embedded mode, gets the
  same rows from Python in executemany form.

Every run is born QUEUED (the column's default); a slot claimed past its misfire grace is
then moved to MISSED in the same transaction (`pipeline.lifecycle.move`), with the reason on
the run and its schedule, and the slot in the schedule's "Last 10" strip. The unique
(schedule, slot) key makes a second run for a slot impossible, whoever claims it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from jobs.claim_postgres import claim_set
from jobs.dispatch import QueuedRun
from models import cron
from models.db import insert_ignoring_conflicts
from models.errors import InvalidInput
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule, with_outcomes
from pipeline.lifecycle import move, note_created

log = logging.getLogger("herald.tick")
RUNS = ReportRun.__table__
SCHEDULES = Schedule.__table__
NOTES_BATCH = 5000  # missed runs moved per statement


@dataclass
class Slice:
    """What one claimed slice made."""

    queued: list[QueuedRun]
    missed: int
    flagged: int
    claimed: int


class Planner:
    """`cron.plan_due_slot` for one tick's `now`, computed once per distinct schedule shape."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._plans: dict[tuple, cron.DueSlot | InvalidInput] = {}

    def plan(self, expr: str, timezone: str, due_at: datetime, grace_s: int) -> cron.DueSlot:
        key = (expr, timezone, due_at, grace_s)
        found = self._plans.get(key)
        if found is None:
            try:
                found = cron.plan_due_slot(expr, timezone, due_at, self.now, timedelta(seconds=grace_s))
            except InvalidInput as exc:
                found = exc
            self._plans[key] = found
        if isinstance(found, InvalidInput):
            raise found
        return found


def claim_slice(session: Session, now: datetime, limit: int, planner: Planner | None = None) -> Slice:
    """Claim up to `limit` due schedules, create their runs, advance their next_run_at."""
    planner = planner or Planner(now)
    if session.bind.dialect.name == "postgresql":
        claimed, created, flagged, graces = claim_set(session, now, limit, planner)
    else:
        claimed, created, flagged, graces = _claim_rows(session, now, limit, planner)
    # A late slot's run was written without queued_at: it is missed, not sent.
    late = [r for r in created if r.queued_at is None]
    queued = [(r.id, r.tenant_id) for r in created if r.queued_at is not None]
    # Each queued run is a DEBUG line, made only when DEBUG is on: the tick's INFO line counts
    # them, and at 100,000 runs a tick, making the lines nobody reads cost a second. A conflict
    # made no run.
    note_created(session, created)
    if late:
        _miss(session, late, now, graces)
    return Slice(queued=queued, missed=len(late), flagged=flagged, claimed=claimed)


def _miss(session: Session, late: list[sa.Row], now: datetime, graces: dict[int, int]) -> None:
    """Each late run is MISSED (a WARNING line after the commit), and it and its schedule say
    which slot was missed and by how much."""
    for start in range(0, len(late), NOTES_BATCH):
        chunk = late[start:start + NOTES_BATCH]
        move(session, RunStatus.QUEUED, RunStatus.MISSED, RUNS.c.id.in_([r.id for r in chunk]),
             finished_at=now)
        notes = [{"b_run": r.id, "b_schedule": r.schedule_id,
                  "b_error": missed_error(r.scheduled_for, now, graces[r.schedule_id])} for r in chunk]
        session.execute(RUNS.update().where(RUNS.c.id == sa.bindparam("b_run"))
                        .values(error=sa.bindparam("b_error")), notes)
        # Each schedule's last status, and its "Last 10" strip with the missed slots: the
        # chunk's strips read in one statement, merged here, written with the status.
        missed: dict[int, list[tuple[int, str, datetime]]] = {}
        for r in chunk:
            missed.setdefault(r.schedule_id, []).append((r.id, RunStatus.MISSED, r.scheduled_for))
        strips = dict(session.execute(sa.select(SCHEDULES.c.id, SCHEDULES.c.recent_runs)
                                      .where(SCHEDULES.c.id.in_(list(missed)))).all())
        errors = {n["b_schedule"]: n["b_error"] for n in notes}  # a schedule's last run's
        session.execute(SCHEDULES.update().where(SCHEDULES.c.id == sa.bindparam("b_schedule"))
                        .values(last_status="missed", last_error=sa.bindparam("b_error"),
                                recent_runs=sa.bindparam("b_strip")),
                        [{"b_schedule": schedule_id, "b_error": errors[schedule_id],
                          "b_strip": with_outcomes(strips.get(schedule_id) or [], outcomes)}
                         for schedule_id, outcomes in missed.items()])


def missed_error(slot: datetime, now: datetime, grace_s: int) -> str:
    return (f"slot {slot.isoformat()} was claimed {now - slot} late, past the "
            f"{timedelta(seconds=grace_s)} misfire grace; not sent")


def _claim_rows(session: Session, now: datetime, limit: int,
                planner: Planner) -> tuple[int, list[sa.Row], int, dict[int, int]]:
    """SQLite (the embedded mode): the same claim, row by row in Python, written in executemany
    form (each statement compiled once). Returns (claimed, runs created, flagged, the misfire
    grace of each schedule claimed)."""
    due = session.execute(
        sa.select(SCHEDULES.c.id, SCHEDULES.c.tenant_id, SCHEDULES.c.cron, SCHEDULES.c.timezone,
                  SCHEDULES.c.next_run_at, SCHEDULES.c.misfire_grace_seconds,
                  SCHEDULES.c.spread_offset_seconds)
        .where(SCHEDULES.c.active.is_(True), SCHEDULES.c.next_run_at <= now)
        .order_by(SCHEDULES.c.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    runs: list[dict[str, Any]] = []
    fired: list[dict[str, Any]] = []    # next_run_at advances, last_fired_at = slot
    notes: list[dict[str, Any]] = []    # missed or unplannable: the reason goes on the schedule
    flagged = 0
    for row in due:
        shift = timedelta(seconds=row.spread_offset_seconds)  # spreading: due at slot + shift
        try:
            plan = planner.plan(row.cron, row.timezone, row.next_run_at - shift, row.misfire_grace_seconds)
        except InvalidInput as exc:
            # Flag it where operators look; never skip silently, never retry every minute.
            flagged += 1
            log.error("schedule %s cannot be planned: %s", row.id, exc)
            notes.append({"id": row.id, "next": None, "last_status": "invalid", "error": str(exc)})
            continue
        late = now - plan.slot - shift > timedelta(seconds=row.misfire_grace_seconds)
        runs.append({"schedule_id": row.id, "tenant_id": row.tenant_id, "scheduled_for": plan.slot,
                     "queued_at": None if late else now})
        if late:  # missed: the schedule moves on to its next slot, the run says why
            notes.append({"id": row.id, "next": plan.next_run_at + shift, "last_status": "missed",
                          "error": None})
        else:
            fired.append({"id": row.id, "next": plan.next_run_at + shift, "slot": plan.slot})
    created = _ExecutemanyWrites.runs(session, runs, now) if runs else []
    if fired:
        _ExecutemanyWrites.fired(session, fired)
    if notes:
        _ExecutemanyWrites.notes(session, notes)
    return len(due), created, flagged, {row.id: row.misfire_grace_seconds for row in due}


class _ExecutemanyWrites:
    """SQLite (the embedded mode): the same rows, each statement compiled once."""

    @staticmethod
    def runs(session: Session, runs: list[dict[str, Any]], now: datetime) -> list[sa.Row]:
        rows = [{**run, "manual": False, "test": False, "attempts": 0, "created_at": now} for run in runs]
        return session.execute(
            insert_ignoring_conflicts(session, RUNS, "schedule_id", "scheduled_for")
            .returning(RUNS.c.id, RUNS.c.tenant_id, RUNS.c.schedule_id, RUNS.c.scheduled_for,
                       RUNS.c.queued_at),
            rows,
        ).all()

    @staticmethod
    def fired(session: Session, fired: list[dict[str, Any]]) -> None:
        session.execute(SCHEDULES.update().where(SCHEDULES.c.id == sa.bindparam("b_id")).values(
            next_run_at=sa.bindparam("b_next"), last_fired_at=sa.bindparam("b_slot")),
            [{"b_id": f["id"], "b_next": f["next"], "b_slot": f["slot"]} for f in fired])

    @staticmethod
    def notes(session: Session, notes: list[dict[str, Any]]) -> None:
        session.execute(SCHEDULES.update().where(SCHEDULES.c.id == sa.bindparam("b_id")).values(
            next_run_at=sa.bindparam("b_next"), last_status=sa.bindparam("b_status"),
            last_error=sa.bindparam("b_error")),
            [{"b_id": n["id"], "b_next": n["next"], "b_status": n["last_status"], "b_error": n["error"]}
             for n in notes])
