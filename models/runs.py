"""Runs (the outbox: one per schedule slot), deliveries (one per recipient) and artifacts.

State changes go through `transition()`, which refuses moves the state machine
does not allow, so a redelivered message cannot take a finished row backwards.

Every state change is announced once its transaction has committed: one log line
(logger "herald.state") and a call to each `on_committed_change` listener (the
metrics count there). ORM changes are seen at flush; a bulk UPDATE or INSERT
reports its moved rows with `note_changes`, and a change already committed
elsewhere with `announce`. One exception: the runs a tick creates QUEUED are
announced only while "herald.state" logs DEBUG (its INFO line counts them; no
outcome is counted on creation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel

from models.base import Channel, created_at, json_column, parent, timestamp
from models.db import CLAIM_OPTION, RedactedText
from models.errors import InvalidTransition
from models.tenancy import Tenant


class RunStatus(StrEnum):
    QUEUED = "queued"        # claimed by a tick, message sent to the query stage
    RUNNING = "running"      # a worker holds the lease
    SUCCESS = "success"      # every delivery sent
    PARTIAL = "partial"      # some deliveries sent, some failed
    FAILED = "failed"        # nothing sent: query/render failed or every delivery failed
    MISSED = "missed"        # the slot was older than the misfire grace when claimed
    SKIPPED = "skipped"      # the report's send_if was not met: nothing sent, the reason kept


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # written before the send
    SENT = "sent"
    FAILED = "failed"        # permanent error, or retries exhausted


FINAL_RUN_STATES = frozenset({RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED,
                              RunStatus.MISSED, RunStatus.SKIPPED})

RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
    # RUNNING -> QUEUED: the tick re-enqueues a run whose worker lease expired.
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED, *FINAL_RUN_STATES} - {RunStatus.MISSED}),
    # PARTIAL/FAILED -> QUEUED: "resend failed" (admin history) sends the failed deliveries again.
    RunStatus.PARTIAL: frozenset({RunStatus.QUEUED}),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
}
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED}),
}


class ReportRun(SQLModel, table=True):
    """One execution of a schedule for one slot; unique on (schedule, slot)."""

    __tablename__ = "report_run"
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "scheduled_for"),
        sa.Index("ix_report_run_status_lease", "status", "lease_expires_at"),
        # The history page: a tenant's runs newest first, paged by (scheduled_for, id).
        sa.Index("ix_report_run_tenant_slot", "tenant_id", "scheduled_for", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = parent("schedule.id", index=False)  # the unique key leads with it
    # The schedule's tenant, copied for the history page's index. No foreign key of its own:
    # run → schedule → tenant already cascades, and its check cost the tick a sixth of each
    # run it writes (docs/benchmarks.md, "The tick").
    tenant_id: int = Field(nullable=False)
    scheduled_for: datetime = timestamp(nullable=False)
    manual: bool = Field(default=False)
    # A test send ("send a test to…"): to `test_recipients` only, never mirrored on the schedule.
    test: bool = Field(default=False)
    test_recipients: list[list[str]] | None = Field(default=None, sa_type=sa.JSON)
    requested_by: str | None = Field(default=None, max_length=320)  # who pressed send now / test
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=sa.String(16))
    queued_at: datetime | None = timestamp()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    lease_expires_at: datetime | None = timestamp()
    attempts: int = Field(default=0)
    # The last error; for a SKIPPED run, the reason nothing was sent.
    error: str | None = Field(default=None, sa_type=RedactedText)
    created_at: datetime = created_at()


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel, written before the send."""

    __table_args__ = (sa.UniqueConstraint("run_id", "channel", "recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = parent("report_run.id", index=False)  # the unique key leads with it
    channel: Channel = Field(sa_type=sa.String(16))
    recipient: str = Field(max_length=320)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=sa.String(16))
    attempts: int = Field(default=0)
    provider_message_id: str | None = Field(default=None, max_length=300)
    # A worker holds a delivery while it sends; another may take it only after this passes.
    lease_expires_at: datetime | None = timestamp()
    # What already reached the recipient, by format (Telegram sends one document per format).
    parts: dict[str, str] = json_column(dict)
    error: str | None = Field(default=None, sa_type=RedactedText)
    created_at: datetime = created_at()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    duration_ms: int | None = None


class Artifact(SQLModel, table=True):
    """A rendered document or query result, readable by every worker until it expires.

    The bytes live in `ArtifactChunk` rows of at most 1 MiB, so a large CSV is
    written and read with constant memory.
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = parent("report_run.id", nullable=True)
    kind: str = Field(max_length=32)
    filename: str = Field(max_length=300)
    media_type: str = Field(max_length=100)
    size: int = Field(sa_type=sa.BigInteger)
    rows: int | None = Field(default=None, sa_type=sa.BigInteger)  # CSV: data rows
    checksum: str = Field(max_length=64)
    created_at: datetime = created_at()
    expires_at: datetime | None = timestamp(index=True)


class ArtifactChunk(SQLModel, table=True):
    __tablename__ = "artifact_chunk"

    artifact_id: int = Field(foreign_key="artifact.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_type=sa.LargeBinary)


def transition(row: ReportRun | Delivery, new: RunStatus | DeliveryStatus) -> None:
    """Move a run or delivery to `new`, refusing moves its state machine does not allow."""
    moves = RUN_MOVES if isinstance(row, ReportRun) else DELIVERY_MOVES
    current = type(new)(row.status)
    if new not in moves.get(current, frozenset()):
        raise InvalidTransition(
            f"{type(row).__name__} {row.id} cannot move from {current} to {new}."
        )
    row.status = new


# --- Committed state changes: logged once each, and handed to listeners ---------------------

state_log = logging.getLogger("herald.state")
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
    bulk: bool = False         # one of many rows a tick's statement queued: logged at DEBUG


Listener = Callable[[StateChange], None]
_listeners: list[Listener] = []


def on_committed_change(listener: Listener) -> None:
    """Call `listener(change)` for every state change once its transaction has committed."""
    if listener not in _listeners:
        _listeners.append(listener)


def run_change(run_id: int, old: str | None, new: str, schedule_id: int | None = None, *,
               bulk: bool = False) -> StateChange:
    return StateChange("run", run_id, run_id, _plain(old), _plain(new), schedule_id=schedule_id,
                       bulk=bulk)


def delivery_change(delivery_id: int, run_id: int, channel: str, old: str, new: str) -> StateChange:
    return StateChange("delivery", delivery_id, run_id, _plain(old), _plain(new), channel=_plain(channel))


def note_changes(session: Session, changes: Iterable[StateChange]) -> None:
    """Changes a bulk statement made in `session`'s transaction: announced after its commit,
    forgotten on rollback."""
    session.info.setdefault(PENDING_CHANGES, []).extend(changes)


def announce(bind: sa.Engine, changes: list[StateChange]) -> None:
    """Log changes already committed and hand them to the listeners; each run's tenant and
    schedule are read from `bind` (without them, if that read fails: the line still counts)."""
    if not changes:
        return
    logged = [c for c in changes if state_log.isEnabledFor(_level(c))]
    context = _run_context(bind, sorted({c.run_id for c in logged})) if logged else {}
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


def _run_context(bind: sa.Engine, run_ids: list[int]) -> dict[int, tuple[str, int]]:
    """(tenant slug, schedule id) per run, read on a connection of its own after the commit."""
    runs, tenants = ReportRun.__table__, Tenant.__table__
    found: dict[int, tuple[str, int]] = {}
    try:
        with bind.connect() as connection:
            connection = connection.execution_options(**{CLAIM_OPTION: False})  # a plain read
            for start in range(0, len(run_ids), CONTEXT_BATCH):
                rows = connection.execute(
                    sa.select(runs.c.id, tenants.c.slug, runs.c.schedule_id)
                    .join(tenants, tenants.c.id == runs.c.tenant_id)
                    .where(runs.c.id.in_(run_ids[start:start + CONTEXT_BATCH])))
                found.update({r.id: (r.slug, r.schedule_id) for r in rows})
    except sa.exc.SQLAlchemyError as exc:
        state_log.warning("the tenants of runs %s could not be read for their log lines (%s)",
                          run_ids[:5], type(exc).__name__)
    return found


def _level(change: StateChange) -> int:
    """A run the tick queued is DEBUG (a tick at the top of the hour queues 100,000 at once;
    its summary line counts them); moves to failed, partial and missed are WARNING."""
    if change.bulk and change.new == RunStatus.QUEUED:
        return logging.DEBUG
    return logging.INFO if change.new in QUIET_STATES else logging.WARNING


def _log_change(change: StateChange) -> None:
    level = _level(change)
    fields = {"event": "state_change", "run_id": change.run_id, "tenant": change.tenant,
              "schedule_id": change.schedule_id, "from_status": change.old, "to_status": change.new}
    where = f"tenant={change.tenant or '?'} schedule={change.schedule_id or '?'}"
    move = f"{change.old or 'new'}→{change.new}"
    if change.kind == "run":
        state_log.log(level, "run %s %s %s", change.id, where, move, extra=fields)
    else:
        state_log.log(level, "delivery %s run=%s %s %s %s", change.id, change.run_id, where,
                      change.channel, move,
                      extra={**fields, "delivery_id": change.id, "channel": change.channel})


def _plain(value: str | None) -> str | None:
    return None if value is None else str(value)


@sa.event.listens_for(OrmSession, "after_flush")
def _note_orm_changes(session: OrmSession, _flush_context: object) -> None:
    """Status moves of runs and deliveries written through the ORM (`transition()`), and runs
    created through it; a delivery is logged when it moves, not when it is planned."""
    changes = []
    for row in (*session.new, *session.dirty):
        if not isinstance(row, ReportRun | Delivery):
            continue
        history = sa.inspect(row).attrs.status.history
        if not history.added or (history.deleted and history.deleted[0] == history.added[0]):
            continue
        old = history.deleted[0] if history.deleted else None
        if isinstance(row, ReportRun):
            changes.append(run_change(row.id, old, row.status, row.schedule_id))
        elif old is not None:
            changes.append(delivery_change(row.id, row.run_id, row.channel, old, row.status))
    if changes:
        note_changes(session, changes)


@sa.event.listens_for(OrmSession, "after_commit")
def _announce_committed(session: OrmSession) -> None:
    changes = session.info.pop(PENDING_CHANGES, None)
    if changes:
        announce(session.get_bind(), changes)


@sa.event.listens_for(OrmSession, "after_rollback")
def _forget_rolled_back(session: OrmSession) -> None:
    session.info.pop(PENDING_CHANGES, None)
