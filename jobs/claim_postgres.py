"""A slice of the claim on PostgreSQL, set-based: the rows never travel through Python.

1. The due schedules are locked (`FOR UPDATE SKIP LOCKED` over `ix_schedule_due`) and
   copied into a temporary table in one statement.
2. Only their distinct (cron, timezone, due time, grace) come back, to be planned with
   croniter once each (at the top of the hour, 100,000 schedules share a few hundred).
3. One `INSERT … SELECT` joins the locked schedules to the plans and writes every run (born
   QUEUED; a late slot's without queued_at, to be missed); one `UPDATE … FROM` advances every
   schedule, found by the physical
   address (ctid) the lock read: a row this transaction holds `FOR UPDATE` cannot move, and
   a TID scan skips a descent of the primary key per row. Only the new runs' ids come back,
   for their messages.

Missed and unplannable schedules are rare; `jobs.claim` moves the missed runs and writes
their sentences.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models.errors import InvalidInput
from models.redact import redact
from models.runs import ReportRun
from models.schedules import Schedule

log = logging.getLogger("herald.tick")
RUNS, SCHEDULES = ReportRun.__table__, Schedule.__table__
_CREATED = "herald_claim_table"  # Connection.info: this connection has its temporary table

CREATE = sa.text("""
    CREATE TEMPORARY TABLE IF NOT EXISTS herald_claim (
        id integer, row_id tid, tenant_id integer, cron text, timezone text, due_at timestamptz,
        grace integer, shift integer) ON COMMIT DELETE ROWS""")
LOCK = sa.text("""
    WITH due AS (
        SELECT id, ctid, tenant_id, cron, timezone, next_run_at, misfire_grace_seconds, spread_offset_seconds
        FROM schedule WHERE active AND next_run_at <= :now
        ORDER BY next_run_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    INSERT INTO herald_claim
    SELECT id, ctid, tenant_id, cron, timezone, next_run_at - spread_offset_seconds * interval '1 second',
           misfire_grace_seconds, spread_offset_seconds FROM due""")
SHAPES = sa.text("SELECT DISTINCT cron, timezone, due_at, grace FROM herald_claim")
PLANS = """
    plan AS (SELECT * FROM unnest(CAST(:crons AS text[]), CAST(:zones AS text[]),
                                  CAST(:dues AS timestamptz[]), CAST(:slots AS timestamptz[]),
                                  CAST(:nexts AS timestamptz[])) AS p(cron, timezone, due_at, slot, next_at)),
    claimed AS (SELECT c.*, p.slot, p.next_at,
                       :now - p.slot - c.shift * interval '1 second' > c.grace * interval '1 second' AS late
                FROM herald_claim c JOIN plan p USING (cron, timezone, due_at))"""
INSERT_RUNS = sa.text(f"""
    WITH {PLANS}
    INSERT INTO report_run (schedule_id, tenant_id, scheduled_for, manual, test, queued_at,
                            attempts, created_at)
    SELECT id, tenant_id, slot, false, false,
           CASE WHEN late THEN NULL ELSE CAST(:now AS timestamptz) END, 0, :now
    FROM claimed
    ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
    RETURNING id, tenant_id, schedule_id, scheduled_for, queued_at""")
ADVANCE = sa.text(f"""
    WITH {PLANS}
    UPDATE schedule AS s
    SET next_run_at = c.next_at + c.shift * interval '1 second',
        last_fired_at = CASE WHEN c.late THEN s.last_fired_at ELSE c.slot END
    FROM claimed AS c WHERE s.ctid = c.row_id""")
FLAG = sa.text("""
    UPDATE schedule AS s SET next_run_at = NULL, last_status = 'invalid', last_error = v.error
    FROM herald_claim AS c
    JOIN unnest(CAST(:crons AS text[]), CAST(:zones AS text[]), CAST(:dues AS timestamptz[]),
                CAST(:errors AS text[])) AS v(cron, timezone, due_at, error)
      USING (cron, timezone, due_at)
    WHERE s.id = c.id
    RETURNING s.id, v.error""")
GRACE = sa.text("SELECT id, grace FROM herald_claim WHERE id = ANY(CAST(:ids AS integer[]))")


def claim_set(session: Session, now: datetime, limit: int,
              planner: Any) -> tuple[int, list[sa.Row], int, dict[int, int]]:
    """Lock, plan and write one slice: (schedules claimed, runs created, schedules flagged, the
    misfire grace of each late run's schedule)."""
    connection = session.connection()
    if not connection.info.get(_CREATED):
        connection.execute(CREATE)
        connection.info[_CREATED] = True
    claimed = connection.execute(LOCK, {"now": now, "limit": limit}).rowcount
    if not claimed:
        return 0, [], 0, {}
    plans: dict[str, list[Any]] = {"crons": [], "zones": [], "dues": [], "slots": [], "nexts": []}
    flags: dict[str, list[Any]] = {"crons": [], "zones": [], "dues": [], "errors": []}
    for shape in connection.execute(SHAPES):
        try:
            plan = planner.plan(shape.cron, shape.timezone, shape.due_at, shape.grace)
        except InvalidInput as exc:  # flagged where operators look, never skipped silently
            for key, value in zip(flags, (shape.cron, shape.timezone, shape.due_at, redact(str(exc))),
                                  strict=True):
                flags[key].append(value)
            continue
        for key, value in zip(plans, (shape.cron, shape.timezone, shape.due_at, plan.slot,
                                      plan.next_run_at), strict=True):
            plans[key].append(value)
    created: list[sa.Row] = []
    if plans["crons"]:
        created = connection.execute(INSERT_RUNS, {"now": now, **plans}).all()
        connection.execute(ADVANCE, {"now": now, **plans})
    flagged = connection.execute(FLAG, flags).all() if flags["crons"] else []
    for schedule_id, error in flagged:
        log.error("schedule %s cannot be planned: %s", schedule_id, error)
    late = [r.schedule_id for r in created if r.queued_at is None]
    graces = dict(connection.execute(GRACE, {"ids": late}).all()) if late else {}
    return claimed, created, len(flagged), graces
