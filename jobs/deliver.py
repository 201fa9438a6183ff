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

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from delivery import CHANNELS, Attachment, DeliveryError, Letter
from delivery.fit import Zipper, fit
from jobs.outbox import record_end
from models.artifacts import QUERY_RESULT, read_content, run_artifact
from models.base import Channel, Format
from models.db import insert_ignoring_conflicts, session_scope, utcnow
from models.redact import redact
from models.reports import Report
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule, ScheduleRecipient
from models.settings import Settings, get_settings
from models.tenancy import Tenant, TenantRecipient
from renderers.csv_export import ZIP_MEDIA_TYPE
from renderers.html import format_kpi

log = logging.getLogger("herald.deliver")
DELIVERIES = Delivery.__table__
CLAIM_BATCH = 25


# --- who -------------------------------------------------------------------------------------

def planned_recipients(session: Session, schedule: Schedule) -> list[tuple[Channel, str]]:
    """For each channel the schedule sends on: its own recipients, else the tenant's."""
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


# --- what ------------------------------------------------------------------------------------

def render_subject(template: str | None, title: str, period: str, tenant: str) -> str:
    """The schedule's subject with {title}, {date} and {tenant} filled in; a default without one."""
    if not template:
        return f"{title} — {period}"
    return template.replace("{title}", title).replace("{date}", period).replace("{tenant}", tenant)


def build_letter(session: Session, run: ReportRun) -> Letter:
    """The run's message, from its stored documents: the same for every recipient and retry."""
    schedule = session.get(Schedule, run.schedule_id)
    report = session.get(Report, schedule.report_id)
    tenant = session.get(Tenant, run.tenant_id)
    definition = report.parsed()
    zone = ZoneInfo(schedule.timezone)
    attachments, generated = [], run.started_at or utcnow()
    for fmt in map(Format, schedule.formats):
        artifact = run_artifact(session, run.id, fmt.value)
        attachments.append(Attachment(format=fmt, filename=artifact.filename, media_type=artifact.media_type,
                                      content=read_content(session, artifact.id), rows=artifact.rows))
        generated = artifact.created_at
    summary = []
    stored = run_artifact(session, run.id, QUERY_RESULT)
    if stored is not None:
        sections = json.loads(read_content(session, stored.id))["sections"]
        for section, result in zip(definition.sections, sections, strict=False):
            if result["kind"] == "kpi":
                value = result["rows"][0][result["columns"].index(section.column)] if result["rows"] else None
                summary.append((section.title, format_kpi(value)))
    summary += [("CSV rows", format_kpi(a.rows)) for a in attachments if a.format == Format.CSV]
    period = run.scheduled_for.astimezone(zone).date().isoformat()
    return Letter(run_id=run.id, subject=render_subject(schedule.subject, definition.title, period, tenant.name),
                  title=definition.title, tenant=tenant.name, period=period,
                  generated_at=generated.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                  summary=tuple(summary), attachments=tuple(attachments))


def fitted_letter(letter: Letter, channel: Channel, settings: Settings, zipper: Zipper) -> Letter:
    attachments = fit(channel, letter.attachments, settings, zipper)
    notes = tuple(f"{a.filename} is zipped to fit the size limit." for a, b in
                  zip(attachments, letter.attachments, strict=True)
                  if a.media_type == ZIP_MEDIA_TYPE and b.media_type != ZIP_MEDIA_TYPE)
    zipped_by_renderer = tuple(f"{a.filename} is zipped ({a.rows:,} rows)." for a in attachments
                               if a.format == Format.CSV and a.media_type == ZIP_MEDIA_TYPE
                               and a.rows is not None and not notes)
    return replace(letter, attachments=attachments, notes=notes + zipped_by_renderer)


# --- claims and stamps -----------------------------------------------------------------------

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
                  duration_ms=sa.bindparam("b_ms"), lease_expires_at=sa.bindparam("b_lease")))


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
                        session.execute(_STAMP, stamps)
            except BaseException as exc:  # noqa: BLE001 - handed to the send loop by flush()
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(stamps) < len(batch):
                return


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
    text = redact(str(error))
    if error.permanent or d.attempts >= settings.delivery_max_attempts:
        if not error.permanent:
            text = f"gave up after {d.attempts} attempts: {text}"
        return {**stamp, "b_status": DeliveryStatus.FAILED, "b_error": text}
    retry_at = now + timedelta(seconds=backoff(d.attempts, settings, error.retry_after))
    return {**stamp, "b_status": DeliveryStatus.PENDING, "b_error": text, "b_finished": None,
            "b_lease": retry_at}


# --- the stage -------------------------------------------------------------------------------

def deliver_run(run_id: int) -> None:
    """Send whatever of the run is not yet sent, then record the run's end state."""
    settings = get_settings()
    with session_scope(claim=True) as session:  # reads then writes: on SQLite, take the lock first
        run = session.get(ReportRun, run_id)
        plan_deliveries(session, run_id, planned_recipients(session, session.get(Schedule, run.schedule_id)))
    with session_scope() as session:
        run = session.get(ReportRun, run_id)
        channels = session.execute(
            sa.select(DELIVERIES.c.channel).where(DELIVERIES.c.run_id == run_id,
                                                  DELIVERIES.c.status == DeliveryStatus.PENDING)
            .distinct()).scalars().all()
        letter = build_letter(session, run) if channels else None
    stamper, zipper = Stamper(), Zipper()
    try:
        for channel in sorted(map(Channel, channels)):
            deliver_channel(run_id, channel, letter, settings, stamper, zipper)
        stamper.flush()
    finally:
        stamper.close()
    finish(run_id)


def deliver_channel(run_id: int, channel: Channel, letter: Letter, settings: Settings,
                    stamper: Stamper, zipper: Zipper) -> None:
    lease = timedelta(seconds=settings.lease_seconds)
    try:
        letter = fitted_letter(letter, channel, settings, zipper)
        sender = CHANNELS[channel](settings)
    except DeliveryError as exc:  # not configured, or documents too large: nobody on it gets anything
        fail_pending(run_id, channel, redact(str(exc)))
        return
    try:
        while True:
            batch = claim(run_id, channel, utcnow(), lease, CLAIM_BATCH)
            if not batch:
                stamper.flush()
                if not _wait_for_pending(run_id, channel):
                    return
                continue
            if _send_batch(batch, channel, sender, letter, settings, stamper, lease) == "stop":
                stamper.flush()
                return
    finally:
        sender.close()


def _send_batch(batch: list[Claimed], channel: Channel, sender: Any, letter: Letter,
                settings: Settings, stamper: Stamper, lease: timedelta) -> str | None:
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
            provider_id = sender.send(d.id, d.recipient, letter, d.parts, touch, part_sent)
        except DeliveryError as exc:
            log.warning("run %s: %s to %s failed: %s", letter.run_id, channel, d.recipient, redact(str(exc)))
            stamper.put(outcome_stamp(d, exc, None, started, settings))
            if exc.channel_wide:
                if exc.permanent:
                    stamper.flush()
                    fail_pending(letter.run_id, channel, redact(str(exc)))
                    return "stop"
                for rest in batch[i + 1:]:  # the server is away for them too: same wait
                    stamper.put(outcome_stamp(rest, exc, None, time.perf_counter(), settings))
                return None
            continue
        stamper.put(outcome_stamp(d, None, provider_id, started, settings))
    return None


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


def fail_pending(run_id: int, channel: Channel, error: str) -> None:
    """A channel-wide permanent failure: every delivery on it not yet sent fails with `error`."""
    with session_scope() as session:
        session.execute(DELIVERIES.update().where(
            DELIVERIES.c.run_id == run_id, DELIVERIES.c.channel == channel.value,
            DELIVERIES.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.FAILED, error=error, finished_at=utcnow(), lease_expires_at=None))


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
                "fallback; add --email or --telegram to the schedule or the tenant.")
        elif not failed:
            status, error = RunStatus.SUCCESS, None
        else:
            status = RunStatus.PARTIAL if len(failed) < len(deliveries) else RunStatus.FAILED
            shown = "; ".join(f"{d.channel} {d.recipient}: {d.error}" for d in failed[:3])
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            error = f"{len(failed)} of {len(deliveries)} deliveries failed: {shown}{more}"
        record_end(session, run, status, utcnow(), redact(error) if error else None)
