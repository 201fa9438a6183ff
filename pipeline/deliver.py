"""The deliver step: exactly one message per (run, channel, recipient), then the run's end.

Each recipient is a `Delivery` row, written before anything is sent. A worker
takes a few rows at a time under a short lease (a conditional UPDATE only one
worker can win), sends, and stamps each row after its send. A retry, a
redelivered message or a second worker finds only what is still pending; a row
whose worker died can be taken again when its lease runs out, and e-mail
resends carry the same Message-ID. Transient failures wait a capped
exponential backoff; permanent ones are recorded at once.

A worker never waits for a retry: `deliver_due` sends what may be sent now and
returns when the next attempt is due, and the deliver actor sends itself a delayed
message for then, so a worker stops within seconds even in an outage. `deliver_run`
(the embedded mode, `herald run`) waits here between passes instead.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from delivery import CHANNELS, DeliveryError, Letter, Sender
from delivery.fit import Zipper
from models.base import Channel
from models.db import session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import Settings, get_settings
from pipeline import metrics
from pipeline.carried import Carried
from pipeline.deliveries import (
    DELIVERIES,
    Stamp,
    Stamper,
    Taken,
    extend,
    fail_pending,
    outcome_stamp,
    plan_deliveries,
    planned_recipients,
    record_part,
    take_deliveries,
    takeable_channels,
)
from pipeline.leases import holding_lease, lease_length, renew_lease, still_running
from pipeline.letter import build_letter, fitted_letter, with_unsubscribe
from pipeline.lifecycle import end_run

log = logging.getLogger("herald.deliver")
TAKE_BATCH = 25
MIN_WAIT = timedelta(milliseconds=250)  # between passes over a run, whatever the clocks say
POLL_S = 5.0


def deliver_run(run_id: int, carried: Carried | None = None) -> None:
    """Send to every recipient of the run not yet sent to, waiting here for retries, then end
    the run from its deliveries (the run must still be RUNNING)."""
    while (retry_at := deliver_due(run_id, carried)) is not None:
        # Another worker's lease may end early (it finished): look again every few seconds.
        time.sleep(min(max((retry_at - utcnow()).total_seconds(), 0.0), POLL_S))


def deliver_due(run_id: int, carried: Carried | None = None) -> datetime | None:
    """Send whatever of the run may be sent now (the run must still be RUNNING). Returns when
    its next pending delivery may be tried (a retry's backoff, another worker's lease), holding
    the run until a lease after that; or None when none is pending (the run has ended).
    With `carried` (the earlier stages ran in this thread), the run's rows and documents are
    not read again."""
    if (carried is None or carried.rows is None) and not still_running(run_id):
        return None
    lease = lease_length()
    with holding_lease(run_id, lease):
        retry_at = _deliver(run_id, carried)
    if retry_at is not None:  # the tick must not take a run waiting for its retry for abandoned
        now = utcnow()
        renew_lease(run_id, now, retry_at - now + lease)
    return retry_at


def _deliver(run_id: int, carried: Carried | None) -> datetime | None:
    settings = get_settings()
    # A run taken without documents was never planned: its plan is new, all of it to send now,
    # so its rows are written taken by this worker.
    fresh = carried is not None and carried.rows is not None and not carried.kinds and not carried.planned
    with session_scope(locking=True) as session:  # reads then writes: on SQLite, take the lock first
        if carried is not None and carried.rows is not None:
            run, schedule = carried.rows[:2]
        else:
            run = session.get(ReportRun, run_id)
            schedule = session.get(Schedule, run.schedule_id)
        pairs = planned_recipients(session, schedule, run, fresh=fresh)
        taken = plan_deliveries(session, run_id, pairs, lease_length() if fresh else None)
    if fresh:  # the next pass (a retry, embedded) reads what it may take
        carried.planned = True
    # The run's documents (and their zips) are spooled here for this pass, and removed after it.
    with tempfile.TemporaryDirectory(prefix=f"herald-deliver-{run_id}-") as spool:
        settled = _deliver_pending(run_id, settings, Path(spool), carried, taken if fresh else None)
    if fresh and pairs and len(settled) == len(pairs) \
            and all(s.outcome == DeliveryStatus.SENT for s in settled.values()):
        end_all_sent(run)  # every delivery of the run, sent by this pass: nothing to read back
        return None
    retry_at = end_from_deliveries(run_id)
    return None if retry_at is None else max(retry_at, utcnow() + MIN_WAIT)


def _deliver_pending(run_id: int, settings: Settings, directory: Path, carried: Carried | None,
                     taken: dict[Channel, list[Taken]] | None = None) -> dict[int, Stamp]:
    """Send on every channel with deliveries that may be taken now (none leased by another
    worker, none waiting for its retry), documents read from `directory`; or, `taken`, to the
    deliveries the plan just wrote taken. Returns the deliveries this pass settled (SENT or
    FAILED), by id."""
    # The unsubscribe links may write the signing key (the first ever): on SQLite a session that
    # reads and then writes takes the lock first, or it fails when another run writes meanwhile.
    with session_scope(locking=bool(settings.public_url)) as session:
        run = carried.rows[0] if carried is not None and carried.rows is not None else session.get(ReportRun, run_id)
        channels = sorted(taken) if taken is not None else takeable_channels(session, run_id, utcnow())
        if not channels:
            return {}
        letter = build_letter(session, run, directory, carried)
        if settings.public_url:
            emailed = None if taken is None else [d.recipient for d in taken.get(Channel.EMAIL, [])]
            letter = with_unsubscribe(session, letter, run, settings.public_url, emailed)
    stamper, zipper = Stamper(), Zipper(directory)
    planned_at = time.monotonic()
    try:
        for channel in sorted(map(Channel, channels)):
            first = None if taken is None else (taken[channel], planned_at)
            deliver_channel(run_id, channel, letter, settings, stamper, zipper, first)
        stamper.flush()
    finally:
        stamper.close()
    return stamper.settled


def deliver_channel(run_id: int, channel: Channel, letter: Letter, settings: Settings,
                    stamper: Stamper, zipper: Zipper,
                    first: tuple[list[Taken], float] | None = None) -> None:
    """Send to the channel's deliveries that may be taken, a batch at a time; `first`: a batch
    already taken, and when (`time.monotonic()`), to send before taking more."""
    lease = timedelta(seconds=settings.lease_seconds)
    try:
        letter = fitted_letter(letter, channel, settings, zipper)
        sender = CHANNELS[channel](settings)
    except DeliveryError as exc:  # not configured, or documents too large: nobody on it gets anything
        fail_pending(run_id, channel, str(exc))
        return
    try:
        batch, taken_at = first or (take_deliveries(run_id, channel, utcnow(), lease, TAKE_BATCH),
                                    time.monotonic())
        while batch:
            if not _send_batch(batch, channel, sender, letter, settings, stamper, lease, taken_at):
                break
            if len(batch) < TAKE_BATCH:  # that was all there was to take
                break
            batch = take_deliveries(run_id, channel, utcnow(), lease, TAKE_BATCH)
            taken_at = time.monotonic()
        stamper.flush()
    finally:
        sender.close()


def _send_batch(batch: list[Taken], channel: Channel, sender: Sender, letter: Letter,
                settings: Settings, stamper: Stamper, lease: timedelta, taken_at: float) -> bool:
    """Send to each recipient taken (their lease taken at `taken_at`, and renewed while they
    wait); False when the channel is unusable for the rest of the run."""
    renewed = taken_at
    for i, d in enumerate(batch):
        def touch(rest: list[Taken] = batch[i:]) -> None:
            nonlocal renewed
            if time.monotonic() - renewed > lease.total_seconds() / 3:
                extend([c.id for c in rest], utcnow(), lease)
                renewed = time.monotonic()

        def part_sent(fmt: str, provider_id: str, d: Taken = d) -> None:
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


def end_all_sent(run: ReportRun) -> None:
    """End `run` SUCCESS: the caller planned and sent every one of its deliveries in this pass,
    and each was SENT by its own stamp (the run as it was taken, RUNNING: nothing in its end
    reads what the move changes, since a SUCCESS pauses nothing)."""
    with session_scope(locking=True) as session:
        end_run(session, run, RunStatus.SUCCESS, utcnow(), None)


def end_from_deliveries(run_id: int) -> datetime | None:
    """End the run from its deliveries, unless one is still pending: all sent SUCCESS, some
    PARTIAL, none FAILED (and FAILED when it had nobody to send to). Returns when the earliest
    pending delivery may be taken again (its retry is due, or the lease of the worker holding
    it runs out), or None when none is pending (the run has ended, here or elsewhere)."""
    with session_scope(locking=True) as session:
        run = session.get(ReportRun, run_id, with_for_update=True)
        if run.status != RunStatus.RUNNING:
            return None
        deliveries = session.execute(  # plain rows: what the outcome reads
            sa.select(DELIVERIES.c.status, DELIVERIES.c.channel, DELIVERIES.c.recipient,
                      DELIVERIES.c.error, DELIVERIES.c.lease_expires_at)
            .where(DELIVERIES.c.run_id == run_id).order_by(DELIVERIES.c.id)).all()
        pending = [d for d in deliveries if d.status == DeliveryStatus.PENDING]
        if pending:  # waiting for a retry, or another worker is still sending (it ends the run)
            now = utcnow()
            return min(d.lease_expires_at or now for d in pending)
        status, error = outcome(deliveries)
        end_run(session, run, status, utcnow(), error)
    return None


def outcome(deliveries: Sequence[Delivery | sa.Row]) -> tuple[RunStatus, str | None]:
    """A run's end state and error from its deliveries, none of them pending."""
    failed = [d for d in deliveries if d.status == DeliveryStatus.FAILED]
    if not deliveries:
        return RunStatus.FAILED, (
            "No recipients: the schedule names none on its channels and the tenant has no "
            "fallback; add e-mail or Telegram recipients to the schedule or the tenant.")
    if not failed:
        return RunStatus.SUCCESS, None
    shown = "; ".join(f"{d.channel} {d.recipient}: {d.error}" for d in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    status = RunStatus.PARTIAL if len(failed) < len(deliveries) else RunStatus.FAILED
    return status, f"{len(failed)} of {len(deliveries)} deliveries failed: {shown}{more}"
