"""Delivery rows: one per (run, channel, recipient), written before any send.

Rows move PENDING -> SENT | FAILED (`models.runs.DELIVERY_MOVES`); every move here
is a conditional UPDATE on `status = 'pending'`, so a row already stamped by
another worker is never moved again; only the rows it did move are announced
(`models.runs.note_changes`: one log line each, counted by the metrics). A worker
holds rows it is sending under a short lease; a transient failure sets the lease to the
time of the next attempt.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from delivery import DeliveryError
from models.base import Channel
from models.db import insert_ignoring_conflicts, session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun, delivery_change, note_changes
from models.schedules import Schedule, ScheduleRecipient
from models.settings import Settings
from models.tenancy import TenantRecipient

DELIVERIES = Delivery.__table__


def planned_recipients(session: Session, schedule: Schedule, run: ReportRun) -> list[tuple[Channel, str]]:
    """For each channel the schedule sends on: its own recipients, else the tenant's.
    A test run goes to its `test_recipients` only, never to the schedule's or the tenant's.
    A run already planned (its rows are written in one transaction) keeps its recipients, so a
    resend of its failed deliveries reaches nobody the schedule gained since."""
    planned = session.execute(sa.select(DELIVERIES.c.channel, DELIVERIES.c.recipient)
                              .where(DELIVERIES.c.run_id == run.id).order_by(DELIVERIES.c.id)).all()
    if planned:
        return [(Channel(c), a) for c, a in planned]
    if run.test:
        return list(dict.fromkeys((Channel(c), a) for c, a in run.test_recipients or []))
    own = session.exec(select(ScheduleRecipient).where(ScheduleRecipient.schedule_id == schedule.id)
                       .order_by(ScheduleRecipient.id)).all()
    fallback = session.exec(select(TenantRecipient).where(TenantRecipient.tenant_id == schedule.tenant_id)
                            .order_by(TenantRecipient.id)).all()
    pairs = []
    for channel in map(Channel, schedule.channels):
        chosen = [r.address for r in own if r.channel == channel]
        pairs += [(channel, a) for a in chosen or [r.address for r in fallback if r.channel == channel]]
    return pairs


def plan_deliveries(session: Session, run_id: int, pairs: list[tuple[Channel, str]]) -> None:
    """One pending row per recipient; a second call (a retry) adds nothing."""
    if pairs:
        session.execute(insert_ignoring_conflicts(session, DELIVERIES, "run_id", "channel", "recipient"),
                        [{"run_id": run_id, "channel": c.value, "recipient": a, "parts": {},
                          "status": DeliveryStatus.PENDING, "attempts": 0, "created_at": utcnow()}
                         for c, a in pairs])


def reopen_failed(session: Session, run_id: int) -> list[tuple[Channel, str]]:
    """Move the run's failed deliveries back to pending (to be sent again), keeping their
    attempts (they add up) and the parts already sent; returns (channel, recipient) of each."""
    rows = session.execute(
        DELIVERIES.update().where(DELIVERIES.c.run_id == run_id,
                                  DELIVERIES.c.status == DeliveryStatus.FAILED)
        .values(status=DeliveryStatus.PENDING, error=None, finished_at=None, duration_ms=None,
                lease_expires_at=None)
        .returning(DELIVERIES.c.id, DELIVERIES.c.channel, DELIVERIES.c.recipient)).all()
    note_changes(session, [delivery_change(r.id, run_id, r.channel, DeliveryStatus.FAILED,
                                           DeliveryStatus.PENDING) for r in sorted(rows)])
    return [(Channel(r.channel), r.recipient) for r in sorted(rows)]


@dataclass
class Claimed:
    id: int
    recipient: str
    attempts: int
    parts: dict[str, str]


def _claimable(run_id: int, channel: Channel, now: datetime) -> Any:
    return sa.and_(DELIVERIES.c.run_id == run_id, DELIVERIES.c.channel == channel.value,
                   DELIVERIES.c.status == DeliveryStatus.PENDING,
                   sa.or_(DELIVERIES.c.lease_expires_at.is_(None), DELIVERIES.c.lease_expires_at < now))


def claim(run_id: int, channel: Channel, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to `limit` pending, unleased deliveries; the UPDATE repeats the test, so a row
    another worker took in between is not taken twice."""
    with session_scope(claim=True) as session:
        ids = session.execute(sa.select(DELIVERIES.c.id).where(_claimable(run_id, channel, now))
                              .order_by(DELIVERIES.c.id).limit(limit)).scalars().all()
        if not ids:
            return []
        rows = session.execute(
            DELIVERIES.update().where(DELIVERIES.c.id.in_(ids), _claimable(run_id, channel, now))
            .values(lease_expires_at=now + lease, attempts=DELIVERIES.c.attempts + 1, started_at=now)
            .returning(DELIVERIES.c.id, DELIVERIES.c.recipient, DELIVERIES.c.attempts, DELIVERIES.c.parts)
        ).all()
    return sorted((Claimed(r.id, r.recipient, r.attempts, dict(r.parts or {})) for r in rows),
                  key=lambda c: c.id)


def extend(ids: list[int], now: datetime, lease: timedelta) -> None:
    with session_scope() as session:
        session.execute(DELIVERIES.update().where(DELIVERIES.c.id.in_(ids),
                                                  DELIVERIES.c.status == DeliveryStatus.PENDING)
                        .values(lease_expires_at=now + lease))


def record_part(delivery_id: int, parts: dict[str, str]) -> None:
    with session_scope() as session:
        session.execute(DELIVERIES.update().where(DELIVERIES.c.id == delivery_id).values(parts=parts))


_STAMP = (DELIVERIES.update()
          .where(DELIVERIES.c.id == sa.bindparam("b_id"), DELIVERIES.c.status == DeliveryStatus.PENDING)
          .values(status=sa.bindparam("b_status"), provider_message_id=sa.bindparam("b_provider"),
                  error=sa.bindparam("b_error"), finished_at=sa.bindparam("b_finished"),
                  duration_ms=sa.bindparam("b_ms"), lease_expires_at=sa.bindparam("b_lease"))
          .returning(DELIVERIES.c.id, DELIVERIES.c.run_id, DELIVERIES.c.channel, DELIVERIES.c.status))


class Stamper:
    """Writes send outcomes on its own thread, so the send loop never waits for a commit.

    Whatever is queued when the thread wakes goes in one transaction; `flush` waits for
    all of it and re-raises a failure (the rows then stay pending and are retried).
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="delivery-stamps", daemon=True)
        self._thread.start()

    def put(self, stamp: dict[str, Any]) -> None:
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
                        _write_stamps(session, stamps)
            except BaseException as exc:  # noqa: BLE001 - handed to the send loop by flush()
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(stamps) < len(batch):
                return


def _write_stamps(session: Session, stamps: list[dict[str, Any]]) -> None:
    """One UPDATE per stamp (not executemany), so each row actually moved to sent or failed is
    known and announced once, and a row another worker had already stamped is not."""
    moved = [session.execute(_STAMP, stamp).first() for stamp in stamps]
    note_changes(session, [delivery_change(r.id, r.run_id, r.channel, DeliveryStatus.PENDING, r.status)
                           for r in moved if r is not None and r.status != DeliveryStatus.PENDING])


def backoff(attempts: int, settings: Settings, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempts + 1`: doubling from the base, capped; at least retry_after."""
    delay = min(settings.delivery_backoff_seconds * 2 ** max(attempts - 1, 0),
                settings.delivery_backoff_max_seconds)
    return max(delay, retry_after or 0.0)


def outcome_stamp(d: Claimed, error: DeliveryError | None, provider_id: str | None, started: float,
                  settings: Settings) -> dict[str, Any]:
    now = utcnow()
    stamp = {"b_id": d.id, "b_status": DeliveryStatus.SENT, "b_provider": provider_id, "b_error": None,
             "b_finished": now, "b_ms": int((time.perf_counter() - started) * 1000), "b_lease": None}
    if error is None:
        return stamp
    text = str(error)
    if error.permanent or d.attempts >= settings.delivery_max_attempts:
        if not error.permanent:
            text = f"gave up after {d.attempts} attempts: {text}"
        return {**stamp, "b_status": DeliveryStatus.FAILED, "b_error": text}
    retry_at = now + timedelta(seconds=backoff(d.attempts, settings, error.retry_after))
    return {**stamp, "b_status": DeliveryStatus.PENDING, "b_error": text, "b_finished": None,
            "b_lease": retry_at}


def fail_pending(run_id: int, channel: Channel, error: str) -> None:
    """A channel-wide permanent failure: every delivery on it not yet sent fails with `error`."""
    with session_scope() as session:
        failed = session.execute(DELIVERIES.update().where(
            DELIVERIES.c.run_id == run_id, DELIVERIES.c.channel == channel.value,
            DELIVERIES.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.FAILED, error=error, finished_at=utcnow(), lease_expires_at=None)
            .returning(DELIVERIES.c.id)).scalars().all()
        note_changes(session, [delivery_change(i, run_id, channel, DeliveryStatus.PENDING,
                                               DeliveryStatus.FAILED) for i in sorted(failed)])
