"""Where a run's or a delivery's status changes: the allowed moves, the one function that
makes them (`move`), a run's end (`end_run`), and the announcement of each committed change.

A run is born QUEUED and a delivery PENDING (their columns' defaults): the tick's claim, send
now, a test send and the deliver stage's plan create them without naming a status. Every
later status is a `move`: one conditional UPDATE, `WHERE status = <old>` and the caller's
conditions, checked first against `RUN_MOVES` / `DELIVERY_MOVES`. A row another worker moved
first no longer matches, so a redelivered message, a retry or a second worker never takes a
row backwards, and only the rows a move did change are announced.

Announced after the commit: one log line per change (logger "herald.state") and a call to each
`on_committed_change` listener (the metrics count there); a rolled-back change is forgotten.
The runs a tick creates are announced only while "herald.state" logs DEBUG (its INFO line
counts them; a tick at the top of the hour creates 100,000).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from models.db import LOCK_OPTION
from models.errors import InvalidTransition
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule, with_outcome
from models.tenancy import Tenant
from pipeline.autopause import pause_if_failing

Q, R = RunStatus.QUEUED, RunStatus.RUNNING
RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    # A worker takes it; nobody took it in HERALD_MAX_RUN_ATTEMPTS tries; the tick claimed its
    # slot past the misfire grace (it is created, then missed, in the claim's transaction).
    Q: frozenset({R, RunStatus.FAILED, RunStatus.MISSED}),
    # Taken over once its worker's lease expired; handed back after an unexpected error, or by
    # the tick when the lease expired; ended.
    R: frozenset({R, Q, RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.SKIPPED}),
    # "Resend failed": the run goes through the deliver stage again.
    RunStatus.PARTIAL: frozenset({Q}),
    RunStatus.FAILED: frozenset({Q}),
}
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED}),
    # "Resend failed": the recipient is sent to again, through the same row.
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
}
RUNS, DELIVERIES = ReportRun.__table__, Delivery.__table__
Status = RunStatus | DeliveryStatus

log = logging.getLogger("herald.lifecycle")
state_log = logging.getLogger("herald.state")


def allowed(old: Status, new: Status) -> bool:
    """Whether the table of moves lets a run or a delivery go from `old` to `new`."""
    moves = RUN_MOVES if isinstance(new, RunStatus) else DELIVERY_MOVES
    return type(old) is type(new) and new in moves.get(old, frozenset())


def move(session: Session, old: Status, new: Status, *where: Any, **values: Any) -> list[sa.Row]:
    """Move the runs (or deliveries, by the statuses' type) in `old` that meet `where` to `new`,
    writing `values` with the status; returns the rows moved (id and what their announcement
    names). Raises InvalidTransition for a move the table does not allow."""
    if not allowed(old, new):
        kind = "run" if isinstance(new, RunStatus) else "delivery"
        raise InvalidTransition(f"A {kind} cannot move from {old} to {new}.")
    if isinstance(new, RunStatus):
        table, model, named = RUNS, ReportRun, (RUNS.c.schedule_id, RUNS.c.tenant_id)
    else:
        table, model, named = DELIVERIES, Delivery, (DELIVERIES.c.run_id, DELIVERIES.c.channel,
                                                     DELIVERIES.c.recipient)
    rows = session.execute(table.update().where(table.c.status == old.value, *where)
                           .values(status=new.value, **values)
                           .returning(table.c.id, *named)).all()
    for row in rows:  # an object of a moved row held by this session is read again when used
        held = session.identity_map.get(session.identity_key(model, row.id))
        if held is not None:
            session.expire(held)
    if isinstance(new, RunStatus):
        note_changes(session, [run_change(r.id, old, new, r.schedule_id, tenant_id=r.tenant_id)
                               for r in rows])
    else:
        note_changes(session, [delivery_change(r.id, r.run_id, r.channel, old, new) for r in rows])
    return rows


def create_manual_run(session: Session, schedule: Schedule, now: datetime, requested_by: str,
                      test_recipients: Sequence[tuple[str, str]] | None = None) -> ReportRun:
    """A run outside the schedule's cron (send now), or a test run to `test_recipients` only
    ((channel, address) pairs), born QUEUED like the tick's."""
    run = ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, scheduled_for=now,
                    manual=True, queued_at=now, requested_by=requested_by)
    if test_recipients is not None:
        run.test = True
        run.test_recipients = [[str(channel), address] for channel, address in test_recipients]
    session.add(run)
    session.flush()
    note_changes(session, [run_change(run.id, None, RunStatus.QUEUED, schedule.id)])
    return run


def note_created(session: Session, runs: Iterable[sa.Row]) -> None:
    """The runs a tick's statement created (each with id and schedule_id): announced at DEBUG,
    and only made into announcements while that level is on."""
    if state_log.isEnabledFor(logging.DEBUG):
        note_changes(session, [run_change(r.id, None, RunStatus.QUEUED, r.schedule_id, bulk=True)
                               for r in sorted(runs, key=lambda r: r.id)])


def end_run(session: Session, run: ReportRun, status: RunStatus, now: datetime,
            error: str | None) -> bool:
    """End `run` (loaded, preferably locked) in `status` with `error` (for SKIPPED, why nothing
    was sent), mirror it on its schedule unless a newer run did, and pause a schedule that keeps
    failing (`pipeline.autopause`). False when the run had moved on meanwhile.

    A test run ("send a test to…") is never mirrored: the schedule's last status stays its own.
    """
    if not move(session, RunStatus(run.status), status, RUNS.c.id == run.id, finished_at=now,
                error=error, lease_expires_at=None):
        return False
    # Locked (FOR NO KEY UPDATE: the tick may still insert its runs), and read afresh: two runs
    # of the schedule ending at once, or the tick missing a slot, must not lose each other's
    # outcome in its strip.
    schedule = session.get(Schedule, run.schedule_id, with_for_update={"key_share": True},
                           populate_existing=True)
    newest = schedule.last_fired_at is None or run.scheduled_for >= schedule.last_fired_at
    if newest and not run.test:
        schedule.last_status, schedule.last_error = status.value, error
    if not run.test:  # the "Last 10" strip, written with the status in the same flush
        schedule.recent_runs = with_outcome(schedule.recent_runs, run.id, status, run.scheduled_for)
    log.info("run %s ended: %s%s", run.id, status, f" ({error})" if error else "")
    pause_if_failing(session, run, now)  # HERALD_AUTOPAUSE_AFTER FAILED in a row: paused
    return True


def reopen_run(session: Session, run: ReportRun, now: datetime) -> list[tuple[str, str]]:
    """"Resend failed": the run's failed deliveries go back to PENDING (their attempts kept,
    they add up; the parts already sent kept too), and the run back to QUEUED with a fresh
    pipeline budget, to go through the deliver stage again with its documents. Returns the
    (channel, recipient) of each delivery reopened."""
    reopened = move(session, DeliveryStatus.FAILED, DeliveryStatus.PENDING,
                    DELIVERIES.c.run_id == run.id, error=None, finished_at=None, duration_ms=None,
                    lease_expires_at=None)
    move(session, RunStatus(run.status), RunStatus.QUEUED, RUNS.c.id == run.id, queued_at=now,
         finished_at=None, lease_expires_at=None, attempts=0, error=None)
    return [(r.channel, r.recipient) for r in sorted(reopened, key=lambda r: r.id)]


# --- Committed changes: logged once each, and handed to listeners ------------------------------

PENDING_CHANGES = "herald_state_changes"  # session.info: changes waiting for the commit
CONTEXT_BATCH = 500                       # run ids per context query
QUIET_STATES = frozenset({"queued", "running", "pending", "sent", "success", "skipped"})  # else WARNING


@dataclass(frozen=True)
class StateChange:
    """One committed move of a run or a delivery; `old` None: the row was created in `new`."""

    kind: str                  # "run" or "delivery"
    id: int
    run_id: int
    old: str | None
    new: str
    channel: str | None = None
    tenant: str | None = None  # slug; filled in from the database when announced
    schedule_id: int | None = None
    tenant_id: int | None = None  # a run's, when the move read it
    bulk: bool = False         # one of many runs a tick's statement created: logged at DEBUG


Listener = Callable[[StateChange], None]
_listeners: list[Listener] = []


def on_committed_change(listener: Listener) -> None:
    """Call `listener(change)` for every state change once its transaction has committed."""
    if listener not in _listeners:
        _listeners.append(listener)


def run_change(run_id: int, old: str | None, new: str, schedule_id: int | None = None, *,
               bulk: bool = False, tenant_id: int | None = None) -> StateChange:
    return StateChange("run", run_id, run_id, _plain(old), _plain(new), schedule_id=schedule_id,
                       bulk=bulk, tenant_id=tenant_id)


def delivery_change(delivery_id: int, run_id: int, channel: str, old: str, new: str) -> StateChange:
    return StateChange("delivery", delivery_id, run_id, _plain(old), _plain(new), channel=_plain(channel))


def note_changes(session: Session, changes: Iterable[StateChange]) -> None:
    """Changes made in `session`'s transaction: announced after its commit, forgotten on rollback."""
    session.info.setdefault(PENDING_CHANGES, []).extend(changes)


def announce(bind: sa.Engine, changes: list[StateChange]) -> None:
    """Log committed changes and hand them to the listeners; each run's tenant and schedule are
    read from `bind` (without them, if that read fails: the line still counts)."""
    if not changes:
        return
    logged = [c for c in changes if state_log.isEnabledFor(_level(c))]
    hints = {c.run_id: (c.tenant_id, c.schedule_id) for c in logged
             if c.tenant_id is not None and c.schedule_id is not None}
    context = _run_context(bind, sorted({c.run_id for c in logged}), hints) if logged else {}
    for change in changes:
        if change.run_id in context:
            tenant, schedule_id = context[change.run_id]
            change = replace(change, tenant=tenant, schedule_id=schedule_id)
        if state_log.isEnabledFor(_level(change)):
            _log_change(change)
        for listener in _listeners:
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a listener never undoes or hides a committed change
                state_log.exception("a state-change listener failed on %s %s", change.kind, change.id)


# A run's tenant and schedule never change: what this process read of them is kept, so the
# later changes of a run (its deliveries, its end) are announced without a read. Bounded.
_KNOWN_RUNS = 20_000
# A tenant's slug never changes either.
_known: collections.OrderedDict[tuple[sa.URL, int], tuple[str, int]] = collections.OrderedDict()
_slugs: dict[tuple[sa.URL, int], str] = {}
_known_lock = threading.Lock()


def _run_context(bind: sa.Engine, run_ids: list[int],
                 hints: dict[int, tuple[int, int]]) -> dict[int, tuple[str, int]]:
    """(tenant slug, schedule id) per run: kept from an earlier change of the run, or from the
    change's own (tenant id, schedule id) `hints` and a tenant's slug kept, else read on a
    connection of its own after the commit."""
    db = bind.url  # ids are a database's
    with _known_lock:
        found = {i: _known[db, i] for i in run_ids if (db, i) in _known}
        hinted = {i: (_slugs[db, t], sid) for i, (t, sid) in hints.items()
                  if i not in found and (db, t) in _slugs}
        found |= hinted
        _known.update({(db, i): c for i, c in hinted.items()})
    missing = [i for i in run_ids if i not in found]
    if missing:
        read, slugs = _read_run_context(bind, missing)
        found.update(read)
        with _known_lock:
            _known.update({(db, i): c for i, c in read.items()})
            _slugs.update({(db, t): slug for t, slug in slugs.items()})
            while len(_known) > _KNOWN_RUNS:
                _known.popitem(last=False)
    return found


def forget_context() -> None:
    """Forget the runs' and tenants' context kept (a database whose ids started over: tests)."""
    with _known_lock:
        _known.clear()
        _slugs.clear()


def _read_run_context(bind: sa.Engine, run_ids: list[int]) -> tuple[dict[int, tuple[str, int]], dict[int, str]]:
    """(tenant slug, schedule id) per run, and the slug per tenant id."""
    tenants = Tenant.__table__
    found: dict[int, tuple[str, int]] = {}
    slugs: dict[int, str] = {}
    try:
        with bind.connect() as connection:
            connection = connection.execution_options(**{LOCK_OPTION: False})  # a plain read
            for start in range(0, len(run_ids), CONTEXT_BATCH):
                rows = connection.execute(
                    sa.select(RUNS.c.id, tenants.c.slug, RUNS.c.schedule_id, RUNS.c.tenant_id)
                    .join(tenants, tenants.c.id == RUNS.c.tenant_id)
                    .where(RUNS.c.id.in_(run_ids[start:start + CONTEXT_BATCH])))
                for r in rows:
                    found[r.id] = (r.slug, r.schedule_id)
                    slugs[r.tenant_id] = r.slug
    except sa.exc.SQLAlchemyError as exc:
        state_log.warning("the tenants of runs %s could not be read for their log lines (%s)",
                          run_ids[:5], type(exc).__name__)
    return found, slugs


def _level(change: StateChange) -> int:
    """A run the tick created is DEBUG; moves to failed, partial and missed are WARNING."""
    if change.bulk and change.new == RunStatus.QUEUED:
        return logging.DEBUG
    return logging.INFO if change.new in QUIET_STATES else logging.WARNING


def _log_change(change: StateChange) -> None:
    level = _level(change)
    fields = {"event": "state_change", "run_id": change.run_id, "tenant": change.tenant,
              "schedule_id": change.schedule_id, "from_status": change.old, "to_status": change.new}
    where = f"tenant={change.tenant or '?'} schedule={change.schedule_id or '?'}"
    moved = f"{change.old or 'new'}→{change.new}"
    if change.kind == "run":
        state_log.log(level, "run %s %s %s", change.id, where, moved, extra=fields)
    else:
        state_log.log(level, "delivery %s run=%s %s %s %s", change.id, change.run_id, where,
                      change.channel, moved,
                      extra={**fields, "delivery_id": change.id, "channel": change.channel})


def _plain(value: str | None) -> str | None:
    return None if value is None else str(value)


@sa.event.listens_for(OrmSession, "after_commit")
def _announce_committed(session: OrmSession) -> None:
    changes = session.info.pop(PENDING_CHANGES, None)
    if changes:
        announce(session.get_bind(), changes)


@sa.event.listens_for(OrmSession, "after_rollback")
def _forget_rolled_back(session: OrmSession) -> None:
    session.info.pop(PENDING_CHANGES, None)
