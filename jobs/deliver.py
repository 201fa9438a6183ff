"""The deliver stage: exactly one message per (run, channel, recipient).

Each recipient is a `Delivery` row, written before anything is sent. A worker
takes a few rows at a time under a short lease (a conditional UPDATE only one
worker can win), sends, and stamps each row after its send. A retry, a
redelivered message or a second worker finds only what is still pending; a row
whose worker died becomes claimable again when its lease runs out, and e-mail
resends carry the same Message-ID. Transient failures wait a capped
exponential backoff; permanent ones are recorded at once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from delivery import CHANNELS, DeliveryError, Letter, Sender
from delivery.fit import Zipper
from jobs import metrics
from jobs.delivery_rows import (
    DELIVERIES,
    Claimed,
    Stamper,
    claim,
    extend,
    fail_pending,
    outcome_stamp,
    plan_deliveries,
    planned_recipients,
    record_part,
)
from jobs.letter import build_letter, fitted_letter
from jobs.outbox import record_end
from models.base import Channel
from models.db import session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import Settings, get_settings

log = logging.getLogger("herald.deliver")
CLAIM_BATCH = 25


def deliver_run(run_id: int) -> None:
    """Send whatever of the run is not yet sent, then record the run's end state."""
    settings = get_settings()
    with session_scope(claim=True) as session:  # reads then writes: on SQLite, take the lock first
        run = session.get(ReportRun, run_id)
        schedule = session.get(Schedule, run.schedule_id)
        plan_deliveries(session, run_id, planned_recipients(session, schedule, run))
    # The run's documents (and their zips) are spooled here once, and removed after sending.
    with tempfile.TemporaryDirectory(prefix=f"herald-deliver-{run_id}-") as spool:
        _deliver_pending(run_id, settings, Path(spool))
    finish(run_id)


def _deliver_pending(run_id: int, settings: Settings, directory: Path) -> None:
    """Send on every channel that still has pending deliveries, documents read from `directory`."""
    with session_scope() as session:
        run = session.get(ReportRun, run_id)
        channels = session.execute(
            sa.select(DELIVERIES.c.channel).where(DELIVERIES.c.run_id == run_id,
                                                  DELIVERIES.c.status == DeliveryStatus.PENDING)
            .distinct()).scalars().all()
        if not channels:
            return
        letter = build_letter(session, run, directory)
    stamper, zipper = Stamper(), Zipper(directory)
    try:
        for channel in sorted(map(Channel, channels)):
            deliver_channel(run_id, channel, letter, settings, stamper, zipper)
        stamper.flush()
    finally:
        stamper.close()


def deliver_channel(run_id: int, channel: Channel, letter: Letter, settings: Settings,
                    stamper: Stamper, zipper: Zipper) -> None:
    lease = timedelta(seconds=settings.lease_seconds)
    try:
        letter = fitted_letter(letter, channel, settings, zipper)
        sender = CHANNELS[channel](settings)
    except DeliveryError as exc:  # not configured, or documents too large: nobody on it gets anything
        fail_pending(run_id, channel, str(exc))
        return
    try:
        while True:
            batch = claim(run_id, channel, utcnow(), lease, CLAIM_BATCH)
            if not batch:
                stamper.flush()
                if not _wait_for_pending(run_id, channel):
                    return
                continue
            if not _send_batch(batch, channel, sender, letter, settings, stamper, lease):
                stamper.flush()
                return
    finally:
        sender.close()


def _send_batch(batch: list[Claimed], channel: Channel, sender: Sender, letter: Letter,
                settings: Settings, stamper: Stamper, lease: timedelta) -> bool:
    """Send to each claimed recipient; False when the channel is unusable for the rest of the run."""
    renewed = time.monotonic()
    for i, d in enumerate(batch):
        def touch(rest: list[Claimed] = batch[i:]) -> None:
            nonlocal renewed
            if time.monotonic() - renewed > lease.total_seconds() / 3:
                extend([c.id for c in rest], utcnow(), lease)
                renewed = time.monotonic()

        def part_sent(fmt: str, provider_id: str, d: Claimed = d) -> None:
            d.parts[fmt] = provider_id
            record_part(d.id, dict(d.parts))

        started = time.perf_counter()
        try:
            touch()
            with metrics.SEND_SECONDS.labels(channel.value).time():
                provider_id = sender.send(d.id, d.recipient, letter, d.parts, touch, part_sent)
        except DeliveryError as exc:
            log.warning("run %s: %s to %s failed: %s", letter.run_id, channel, d.recipient, exc)
            stamper.put(outcome_stamp(d, exc, None, started, settings))
            if exc.channel_wide:
                if exc.permanent:
                    stamper.flush()
                    fail_pending(letter.run_id, channel, str(exc))
                    return False
                for rest in batch[i + 1:]:  # the server is away for them too: same wait
                    stamper.put(outcome_stamp(rest, exc, None, time.perf_counter(), settings))
                return True
            continue
        stamper.put(outcome_stamp(d, None, provider_id, started, settings))
    return True


def _wait_for_pending(run_id: int, channel: Channel) -> bool:
    """Sleep until the earliest pending delivery is claimable again; False when none is pending."""
    with session_scope() as session:
        pending = session.execute(
            sa.select(sa.func.count(), sa.func.min(DELIVERIES.c.lease_expires_at))
            .where(DELIVERIES.c.run_id == run_id, DELIVERIES.c.channel == channel.value,
                   DELIVERIES.c.status == DeliveryStatus.PENDING)).one()
    count, earliest = pending
    if not count:
        return False
    wait = (earliest - utcnow()).total_seconds() if earliest else 0.0
    time.sleep(min(max(wait, 0.05), 5.0))
    return True


def finish(run_id: int) -> None:
    """The run's end state from its deliveries: all sent SUCCESS, some PARTIAL, none FAILED."""
    with session_scope(claim=True) as session:
        run = session.get(ReportRun, run_id, with_for_update=True)
        if run.status != RunStatus.RUNNING:
            return
        deliveries = session.exec(select(Delivery).where(Delivery.run_id == run_id).order_by(Delivery.id)).all()
        if any(d.status == DeliveryStatus.PENDING for d in deliveries):
            return  # another worker is still sending; it finishes the run
        failed = [d for d in deliveries if d.status == DeliveryStatus.FAILED]
        if not deliveries:
            status, error = RunStatus.FAILED, (
                "No recipients: the schedule names none on its channels and the tenant has no "
                "fallback; add e-mail or Telegram recipients to the schedule or the tenant.")
        elif not failed:
            status, error = RunStatus.SUCCESS, None
        else:
            status = RunStatus.PARTIAL if len(failed) < len(deliveries) else RunStatus.FAILED
            shown = "; ".join(f"{d.channel} {d.recipient}: {d.error}" for d in failed[:3])
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            error = f"{len(failed)} of {len(deliveries)} deliveries failed: {shown}{more}"
        record_end(session, run, status, utcnow(), error)
