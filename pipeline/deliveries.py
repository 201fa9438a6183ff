"""Delivery rows: one per (run, channel, recipient), written before any send.

A row is born PENDING and moves to SENT or FAILED through `pipeline.lifecycle.move`, a
conditional UPDATE on its status, so a row already stamped by another worker is never moved
again and only the rows a move changed are announced. A worker holds the rows it is sending
under a short lease; a transient failure keeps the row PENDING and sets the lease to the time
of the next attempt.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, select

from delivery import DeliveryError
from models.base import Channel
from models.db import insert_ignoring_conflicts, session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun
from models.schedules import Schedule, ScheduleRecipient
from models.settings import Settings
from models.tenancy import TenantRecipient
from models.unsubscribe import opted_out
from pipeline.lifecycle import move

DELIVERIES = Delivery.__table__


def planned_recipients(session: Session, schedule: Schedule, run: ReportRun,
                       fresh: bool = False) -> list[tuple[Channel, str]]:
    """For each channel the schedule sends on: its own recipients, else the tenant's (less
    those that unsubscribed from this schedule).
    A test run goes to its `test_recipients` only, never to the schedule's or the tenant's.
    A run already planned (its rows are written in one transaction) keeps its recipients, so a
    resend of its failed deliveries reaches nobody the schedule gained since. `fresh`: the
    caller knows the run was never planned (it had no documents when it was taken)."""
    planned = [] if fresh else session.execute(
        sa.select(DELIVERIES.c.channel, DELIVERIES.c.recipient)
        .where(DELIVERIES.c.run_id == run.id).order_by(DELIVERIES.c.id)).all()
    if planned:
        return [(Channel(c), a) for c, a in planned]
    if run.test:
        return list(dict.fromkeys((Channel(c), a) for c, a in run.test_recipients or []))
    own = session.exec(select(ScheduleRecipient).where(ScheduleRecipient.schedule_id == schedule.id)
                       .order_by(ScheduleRecipient.id)).all()
    fallback = [] if {r.channel for r in own} >= set(schedule.channels) else session.exec(
        select(TenantRecipient).where(TenantRecipient.tenant_id == schedule.tenant_id)
        .order_by(TenantRecipient.id)).all()
    pairs = []
    for channel in map(Channel, schedule.channels):
        chosen = [r.address for r in own if r.channel == channel]
        if not chosen:  # the tenant's, but those that unsubscribed from this schedule
            gone = opted_out(session, schedule.id, channel)
            chosen = [r.address for r in fallback if r.channel == channel and r.address not in gone]
        pairs += [(channel, a) for a in chosen]
    return pairs


@dataclass
class Taken:
    id: int
    recipient: str
    attempts: int
    parts: dict[str, str]


def plan_deliveries(session: Session, run_id: int, pairs: list[tuple[Channel, str]],
                    lease: timedelta | None = None) -> dict[Channel, list[Taken]]:
    """One pending row per recipient; a second call (a retry) adds nothing. With `lease` (the
    caller knows the run has no rows yet and sends now), the rows are written taken by this
    worker, as `take_deliveries` would take them, and returned per channel."""
    if not pairs:
        return {}
    now = utcnow()
    taken = {"lease_expires_at": now + lease, "attempts": 1, "started_at": now} if lease else {"attempts": 0}
    rows = [{"run_id": run_id, "channel": c.value, "recipient": a, "parts": {}, "created_at": now,
             **taken} for c, a in pairs]
    insert = insert_ignoring_conflicts(session, DELIVERIES, "run_id", "channel", "recipient")
    if lease is None:
        session.execute(insert, rows)
        return {}
    written = session.execute(insert.returning(DELIVERIES.c.id, DELIVERIES.c.channel,
                                               DELIVERIES.c.recipient, DELIVERIES.c.attempts), rows).all()
    by_channel: dict[Channel, list[Taken]] = {}
    for r in sorted(written, key=lambda r: r.id):
        by_channel.setdefault(Channel(r.channel), []).append(Taken(r.id, r.recipient, r.attempts, {}))
    return by_channel


def _takeable(run_id: int, channel: Channel | None, now: datetime) -> Any:
    """Pending, and not leased (or its lease, or the wait for its retry, is over); on `channel`."""
    on_channel = () if channel is None else (DELIVERIES.c.channel == channel.value,)
    return sa.and_(DELIVERIES.c.run_id == run_id, *on_channel,
                   DELIVERIES.c.status == DeliveryStatus.PENDING,
                   sa.or_(DELIVERIES.c.lease_expires_at.is_(None), DELIVERIES.c.lease_expires_at < now))


def takeable_channels(session: Session, run_id: int, now: datetime) -> list[Channel]:
    """The channels on which the run has deliveries that may be taken now."""
    return [Channel(c) for c in session.execute(
        sa.select(DELIVERIES.c.channel).where(_takeable(run_id, None, now)).distinct()).scalars()]


def take_deliveries(run_id: int, channel: Channel, now: datetime, lease: timedelta,
                    limit: int) -> list[Taken]:
    """Take up to `limit` pending, unleased deliveries, in one statement; the UPDATE repeats the
    test on each row it picked, so a row another worker took in between is not taken twice."""
    with session_scope(locking=True) as session:
        picked = (sa.select(DELIVERIES.c.id).where(_takeable(run_id, channel, now))
                  .order_by(DELIVERIES.c.id).limit(limit).scalar_subquery())
        rows = session.execute(
            DELIVERIES.update().where(DELIVERIES.c.id.in_(picked), _takeable(run_id, channel, now))
            .values(lease_expires_at=now + lease, attempts=DELIVERIES.c.attempts + 1, started_at=now)
            .returning(DELIVERIES.c.id, DELIVERIES.c.recipient, DELIVERIES.c.attempts, DELIVERIES.c.parts)
        ).all()
    return sorted((Taken(r.id, r.recipient, r.attempts, dict(r.parts or {})) for r in rows),
                  key=lambda c: c.id)


def extend(ids: list[int], now: datetime, lease: timedelta) -> None:
    with session_scope() as session:
        session.execute(DELIVERIES.update().where(DELIVERIES.c.id.in_(ids),
                                                  DELIVERIES.c.status == DeliveryStatus.PENDING)
                        .values(lease_expires_at=now + lease))


def record_part(delivery_id: int, parts: dict[str, str]) -> None:
    with session_scope() as session:
        session.execute(DELIVERIES.update().where(DELIVERIES.c.id == delivery_id).values(parts=parts))


class Stamp(NamedTuple):
    """One send's outcome for one delivery: SENT or FAILED, or still PENDING with the time of
    its next attempt (`retry_at`)."""

    delivery_id: int
    outcome: DeliveryStatus
    provider_message_id: str | None
    error: str | None
    finished_at: datetime | None
    duration_ms: int
    retry_at: datetime | None = None


class Stamper:
    """Writes send outcomes on its own thread, so the send loop never waits for a commit.

    Whatever is queued when the thread wakes goes in one transaction; `flush` waits for
    all of it and re-raises a failure (the rows then stay pending and are retried).
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Stamp | None] = queue.Queue()
        self._error: BaseException | None = None
        # The deliveries this stamper moved to SENT or FAILED (committed), by id: read after
        # `flush`, they tell a run whose every delivery it stamped how the run ended.
        self.settled: dict[int, Stamp] = {}
        self._thread = threading.Thread(target=self._run, name="delivery-stamps", daemon=True)
        self._thread.start()

    def put(self, stamp: Stamp) -> None:
        self._queue.put(stamp)

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stamps = [s for s in batch if s is not None]
            try:
                if stamps:
                    with session_scope() as session:
                        moved = _write_stamps(session, stamps)
                    self.settled.update((s.delivery_id, s) for s in moved)
            except BaseException as exc:  # noqa: BLE001 - handed to the send loop by flush()
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(stamps) < len(batch):
                return


def _write_stamps(session: Session, stamps: list[Stamp]) -> list[Stamp]:
    """One statement per stamp: an outcome is a move from PENDING (announced once, and not at
    all for a row another worker had already stamped); a retry keeps the row PENDING. Returns
    the outcomes that moved their row."""
    moved = []
    for stamp in stamps:
        this = DELIVERIES.c.id == stamp.delivery_id
        if stamp.outcome == DeliveryStatus.PENDING:
            session.execute(DELIVERIES.update().where(this, DELIVERIES.c.status == DeliveryStatus.PENDING)
                            .values(error=stamp.error, duration_ms=stamp.duration_ms,
                                    lease_expires_at=stamp.retry_at))
            continue
        if move(session, DeliveryStatus.PENDING, stamp.outcome, this,
                provider_message_id=stamp.provider_message_id, error=stamp.error,
                finished_at=stamp.finished_at, duration_ms=stamp.duration_ms, lease_expires_at=None):
            moved.append(stamp)
    return moved


def backoff(attempts: int, settings: Settings, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempts + 1`: doubling from the base, capped; at least retry_after."""
    delay = min(settings.delivery_backoff_seconds * 2 ** max(attempts - 1, 0),
                settings.delivery_backoff_max_seconds)
    return max(delay, retry_after or 0.0)


def outcome_stamp(d: Taken, error: DeliveryError | None, provider_id: str | None, started: float,
                  settings: Settings) -> Stamp:
    now = utcnow()
    ms = int((time.perf_counter() - started) * 1000)
    if error is None:
        return Stamp(d.id, DeliveryStatus.SENT, provider_id, None, now, ms)
    text = str(error)
    if error.permanent or d.attempts >= settings.delivery_max_attempts:
        if not error.permanent:
            text = f"gave up after {d.attempts} attempts: {text}"
        return Stamp(d.id, DeliveryStatus.FAILED, None, text, now, ms)
    retry_at = now + timedelta(seconds=backoff(d.attempts, settings, error.retry_after))
    return Stamp(d.id, DeliveryStatus.PENDING, None, text, None, ms, retry_at)


def fail_pending(run_id: int, channel: Channel, error: str) -> None:
    """A channel-wide permanent failure: every delivery on it not yet sent fails with `error`."""
    with session_scope() as session:
        move(session, DeliveryStatus.PENDING, DeliveryStatus.FAILED, DELIVERIES.c.run_id == run_id,
             DELIVERIES.c.channel == channel.value, error=error, finished_at=utcnow(),
             lease_expires_at=None)
