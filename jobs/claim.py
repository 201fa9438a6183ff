"""Claiming one slice of due schedules: lock them, plan their slots, write their runs.

A slice is one transaction. Its cost follows what it claims, with no step per schedule
that a set can do:

- one `SELECT … FOR UPDATE SKIP LOCKED` over `ix_schedule_due` (concurrent ticks split
  the work; SQLite holds the write lock instead);
- planning with croniter once per (expression, timezone, due time, grace): at the top of
  the hour, thousands of schedules share a handful of plans;
- on PostgreSQL, one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` for all the
  runs and one `UPDATE … FROM unnest(…)` for all the schedules; SQLite gets the same rows
  in executemany form.

The unique (schedule, slot) key makes a second run for a slot impossible, whoever claims it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models import cron
from models.db import insert_ignoring_conflicts
from models.errors import InvalidInput
from models.redact import redact
from models.runs import ReportRun, RunStatus, note_changes, run_change
from models.schedules import Schedule

log = logging.getLogger("herald.tick")
RUNS = ReportRun.__table__
SCHEDULES = Schedule.__table__

# (run id, tenant id) pairs, handed to the dispatcher once their transaction committed.
QueuedRun = tuple[int, int]


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
    missed = flagged = 0
    for row in due:
        shift = timedelta(seconds=row.spread_offset_seconds)  # spreading: due at slot + shift
        try:
            plan = planner.plan(row.cron, row.timezone, row.next_run_at - shift, row.misfire_grace_seconds)
        except InvalidInput as exc:
            # Flag it where operators look; never skip silently, never retry every minute.
            flagged += 1
            log.error("schedule %s cannot be planned: %s", row.id, exc)
            notes.append({"id": row.id, "next": None, "status": "invalid", "error": str(exc)})
            continue
        if now - plan.slot - shift > timedelta(seconds=row.misfire_grace_seconds):  # missed
            missed += 1
            error = (f"slot {plan.slot.isoformat()} was claimed {now - plan.slot} late, past "
                     f"the {timedelta(seconds=row.misfire_grace_seconds)} misfire grace; not sent")
            runs.append({"schedule_id": row.id, "tenant_id": row.tenant_id, "scheduled_for": plan.slot,
                         "status": RunStatus.MISSED.value, "queued_at": None, "finished_at": now,
                         "error": error})
            notes.append({"id": row.id, "next": plan.next_run_at + shift, "status": "missed", "error": error})
        else:
            runs.append({"schedule_id": row.id, "tenant_id": row.tenant_id, "scheduled_for": plan.slot,
                         "status": RunStatus.QUEUED.value, "queued_at": now, "finished_at": None,
                         "error": None})
            fired.append({"id": row.id, "next": plan.next_run_at + shift, "slot": plan.slot})
    write = _PostgresWrites if session.bind.dialect.name == "postgresql" else _ExecutemanyWrites
    created = write.runs(session, runs, now) if runs else []
    if fired:
        write.fired(session, fired)
    if notes:
        write.notes(session, notes)
    # After the commit, each run made is counted and logged (a queued one at DEBUG, a missed
    # one as a WARNING); a conflict made none.
    note_changes(session, [run_change(r.id, None, r.status, r.schedule_id, bulk=True)
                           for r in sorted(created)])
    queued = [(r.id, r.tenant_id) for r in created if r.status == RunStatus.QUEUED]
    return Slice(queued=queued, missed=missed, flagged=flagged, claimed=len(due))


def _column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row[key] for row in rows]


def _redacted(rows: list[dict[str, Any]], key: str) -> list[str | None]:
    """Error texts as `RedactedText` would store them (these statements bind plain arrays)."""
    return [None if row[key] is None else redact(row[key]) for row in rows]


class _PostgresWrites:
    """Each write one statement over arrays, whatever the number of rows."""

    RUNS_SQL = sa.text("""
        INSERT INTO report_run (schedule_id, tenant_id, scheduled_for, manual, test, status,
                                queued_at, finished_at, attempts, error, created_at)
        SELECT v.schedule_id, v.tenant_id, v.slot, false, false, v.status, v.queued_at,
               v.finished_at, 0, v.error, :now
        FROM unnest(CAST(:schedule_ids AS integer[]), CAST(:tenant_ids AS integer[]),
                    CAST(:slots AS timestamptz[]), CAST(:statuses AS varchar[]),
                    CAST(:queued AS timestamptz[]), CAST(:finished AS timestamptz[]),
                    CAST(:errors AS text[]))
             AS v(schedule_id, tenant_id, slot, status, queued_at, finished_at, error)
        ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
        RETURNING id, tenant_id, status, schedule_id""")
    FIRED_SQL = sa.text("""
        UPDATE schedule AS s SET next_run_at = v.next, last_fired_at = v.slot
        FROM unnest(CAST(:ids AS integer[]), CAST(:nexts AS timestamptz[]),
                    CAST(:slots AS timestamptz[])) AS v(id, next, slot)
        WHERE s.id = v.id""")
    NOTES_SQL = sa.text("""
        UPDATE schedule AS s SET next_run_at = v.next, last_status = v.status, last_error = v.error
        FROM unnest(CAST(:ids AS integer[]), CAST(:nexts AS timestamptz[]),
                    CAST(:statuses AS varchar[]), CAST(:errors AS text[])) AS v(id, next, status, error)
        WHERE s.id = v.id""")

    @classmethod
    def runs(cls, session: Session, runs: list[dict[str, Any]], now: datetime) -> list[sa.Row]:
        return session.execute(cls.RUNS_SQL, {
            "now": now, "schedule_ids": _column(runs, "schedule_id"),
            "tenant_ids": _column(runs, "tenant_id"), "slots": _column(runs, "scheduled_for"),
            "statuses": _column(runs, "status"), "queued": _column(runs, "queued_at"),
            "finished": _column(runs, "finished_at"), "errors": _redacted(runs, "error"),
        }).all()

    @classmethod
    def fired(cls, session: Session, fired: list[dict[str, Any]]) -> None:
        session.execute(cls.FIRED_SQL, {"ids": _column(fired, "id"), "nexts": _column(fired, "next"),
                                        "slots": _column(fired, "slot")})

    @classmethod
    def notes(cls, session: Session, notes: list[dict[str, Any]]) -> None:
        session.execute(cls.NOTES_SQL, {"ids": _column(notes, "id"), "nexts": _column(notes, "next"),
                                        "statuses": _column(notes, "status"),
                                        "errors": _redacted(notes, "error")})


class _ExecutemanyWrites:
    """SQLite (the embedded mode): the same rows, each statement compiled once."""

    @staticmethod
    def runs(session: Session, runs: list[dict[str, Any]], now: datetime) -> list[sa.Row]:
        rows = [{**run, "manual": False, "test": False, "attempts": 0, "created_at": now} for run in runs]
        return session.execute(
            insert_ignoring_conflicts(session, RUNS, "schedule_id", "scheduled_for")
            .returning(RUNS.c.id, RUNS.c.tenant_id, RUNS.c.status, RUNS.c.schedule_id),
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
            [{"b_id": n["id"], "b_next": n["next"], "b_status": n["status"], "b_error": n["error"]}
             for n in notes])
