"""Runs on request: send now, send a test, resend the failed deliveries, run here and now; and
runs with their deliveries as JSON-ready data (`herald runs`, a schedule's history).

One implementation each, whichever face asks (the CLI, the admin, `jobs.shell`, the HTTP
API): the run is created (or reopened) and recorded, committed, and only then handed to
`dispatch` — by default the tick's (`jobs.dispatch.dispatch_runs`: the tenant's shard queue,
or the whole pipeline in this process when herald runs embedded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import ChangeEvent, record_change
from models.errors import BrokerUnavailable, InvalidInput
from models.runs import Artifact, Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.tenancy import Tenant
from pipeline.lifecycle import create_manual_run, reopen_run
from services.access import Action, Viewer, Who, owned
from services.schedule_fields import parse_recipients

Dispatch = Callable[[Sequence[tuple[int, int]]], None]  # (run id, tenant id) pairs, committed


@dataclass(frozen=True)
class SentRun:
    """The run a send created: its id and status (final in the embedded mode, else queued)."""

    run_id: int
    schedule_id: int
    status: str
    test: bool


@dataclass(frozen=True)
class ResendResult:
    """The resent run: its status after dispatch (final in the embedded mode, else queued)
    and who its failed deliveries went to again."""

    run_id: int
    status: str
    resent: tuple[tuple[str, str], ...]


def send_now(session: Session, who: Who, schedule_id: int, *, now: datetime,
             dispatch: Dispatch | None = None) -> SentRun:
    """A manual run to the schedule's recipients, dispatched as the tick dispatches, and
    recorded among the schedule's changes. Commits the session, then dispatches."""
    schedule = owned(session, who, Schedule, schedule_id, "schedule", Action.EDIT)
    run = create_manual_run(session, schedule, now, who.actor)
    return _send(session, schedule, run, dispatch, "sent now", who.actor, {"run": [None, run.id]})


def send_test(session: Session, who: Who, schedule_id: int, *, now: datetime,
              emails: Sequence[str] = (), chats: Sequence[str] = (),
              dispatch: Dispatch | None = None) -> SentRun:
    """A test run to the addresses and chats given (validated like recipients) and nobody else,
    through the same delivery path, recorded among the schedule's changes; the schedule's last
    status is left as it is."""
    schedule = owned(session, who, Schedule, schedule_id, "schedule", Action.EDIT)
    recipients = parse_recipients(list(emails), list(chats))
    if not recipients:
        raise InvalidInput("The test recipients are empty; type at least one e-mail address or "
                           "Telegram chat id to send the test to.")
    run = create_manual_run(session, schedule, now, who.actor, test_recipients=recipients)
    return _send(session, schedule, run, dispatch, "test sent", who.actor,
                 {"run": [None, run.id], "to": [None, [f"{c} {a}" for c, a in recipients]]})


def run_here(session: Session, who: Who, schedule_id: int, *, now: datetime) -> dict[str, Any]:
    """Send now, with the whole pipeline run synchronously in this process (`herald run`);
    returns the run as `runs_with_deliveries` shows it."""
    from pipeline.in_process import run_in_process

    sent = send_now(session, who, schedule_id, now=now,
                    dispatch=lambda runs: [run_in_process(run_id) for run_id, _ in runs])
    return run_record(session, sent.run_id)


def _send(session: Session, schedule: Schedule, run: ReportRun, dispatch: Dispatch | None,
          action: str, actor: str, changes: dict[str, list[Any]]) -> SentRun:
    """Record the send among the schedule's changes, commit it with the new run, dispatch the
    run and read back its status. The broker is asked first; a run whose message it then did
    not take after all is removed again, with its record (the tick must not send it later: the
    caller is told it was not sent)."""
    run_id, test = run.id, run.test
    if dispatch is None:
        _ask_broker("nothing was sent or queued: send again once it answers.")
    event = record_change(session, schedule.tenant_id, "schedule", schedule.id, action, actor, changes)
    try:
        status = _commit_and_dispatch(session, run_id, run.tenant_id, dispatch)
    except BrokerUnavailable as exc:
        session.rollback()
        session.execute(sa.delete(ChangeEvent).where(ChangeEvent.id == event.id))
        session.execute(sa.delete(ReportRun).where(ReportRun.id == run_id))
        session.commit()
        raise BrokerUnavailable(f"{exc}; nothing was sent or queued: send again once it answers.") from None
    return SentRun(run_id=run_id, schedule_id=schedule.id, status=status, test=test)


def _ask_broker(then: str) -> None:
    """Raise BrokerUnavailable, its sentence ending with `then`, unless the broker answers now.
    Asked before a send is committed: once a run is committed QUEUED the tick sends it, so a
    send the broker cannot take must leave nothing behind (and announce nothing)."""
    from jobs.dispatch import check_broker

    try:
        check_broker()
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"{exc}; {then}") from None


def _commit_and_dispatch(session: Session, run_id: int, tenant_id: int,
                         dispatch: Dispatch | None) -> str:
    """Commit, hand the run to `dispatch` (by default the tick's), and read its status after
    (on a new transaction: an embedded dispatch has run the pipeline meanwhile)."""
    session.commit()
    if dispatch is None:
        from jobs.dispatch import dispatch_runs  # the broker is built when first sending

        dispatch = dispatch_runs
    dispatch([(run_id, tenant_id)])
    session.expire_all()
    return str(session.get(ReportRun, run_id).status)


def resend_failed(session: Session, who: Who, run_id: int, *, now: datetime,
                  dispatch: Dispatch | None = None) -> ResendResult:
    """Send the run's failed deliveries again, and only those, through the deliver stage.

    The failed rows go back to pending with their attempts kept (they add up); the run goes
    back to QUEUED with a fresh pipeline budget (`pipeline.lifecycle.reopen_run`), the resend
    is recorded, the session committed and the run dispatched as send now dispatches it. Its
    documents are reused as they are: a run whose documents expired is refused. The broker is
    asked first, so that a resend it cannot take changes nothing.
    """
    owned(session, who, ReportRun, run_id, "run", Action.EDIT)
    run = session.get(ReportRun, run_id, with_for_update=True, populate_existing=True)
    if run.status not in (RunStatus.PARTIAL, RunStatus.FAILED):
        raise InvalidInput(f"Run {run_id} is {run.status}; only a partial or failed run has "
                           f"failed deliveries to send again.")
    failed = session.execute(sa.select(sa.func.count()).where(
        Delivery.run_id == run_id, Delivery.status == DeliveryStatus.FAILED)).scalar_one()
    if not failed:
        raise InvalidInput(f"Run {run_id} has no failed deliveries (it failed before sending); "
                           f"use send now on its schedule instead.")
    _check_documents(session, run, now)
    if dispatch is None:
        _ask_broker(f"nothing was resent (run {run_id} is {run.status} as before): resend once "
                    f"it answers.")
    old = {"status": str(run.status), "attempts": run.attempts, "error": run.error}
    tenant_id = run.tenant_id
    resent = reopen_run(session, run, now)
    record_change(session, tenant_id, "run", run_id, "resend", who.actor, {
        "status": [old["status"], RunStatus.QUEUED.value], "attempts": [old["attempts"], 0],
        "error": [old["error"], None],
        "resent": [None, [f"{channel} {recipient}" for channel, recipient in resent]]})
    try:
        status = _commit_and_dispatch(session, run_id, tenant_id, dispatch)
    except BrokerUnavailable as exc:  # it answered a moment ago; the tick re-enqueues the run
        raise BrokerUnavailable(f"{exc}; run {run_id} stays queued and is sent once it answers, "
                                f"so do not resend it again.") from None
    return ResendResult(run_id=run_id, status=status, resent=tuple((str(c), r) for c, r in resent))


def _check_documents(session: Session, run: ReportRun, now: datetime) -> None:
    """Every format the schedule sends is still stored for the run, unexpired."""
    formats = session.get(Schedule, run.schedule_id).formats
    kept = {a.kind: a for a in session.exec(select(Artifact).where(Artifact.run_id == run.id))}
    for fmt in formats:
        artifact = kept.get(fmt)
        if artifact is None:
            raise InvalidInput(f"The {fmt} of run {run.id} is no longer kept; send the schedule "
                               f"now to make new documents.")
        if artifact.expires_at is not None and artifact.expires_at <= now:
            raise InvalidInput(f"The documents of run {run.id} expired on "
                               f"{artifact.expires_at.date().isoformat()}; send the schedule now "
                               f"to make new ones.")


# --- runs as data ------------------------------------------------------------------------------

def runs_with_deliveries(session: Session, who: Who, *, tenant_slug: str | None = None,
                         schedule_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Their tenants' runs, newest first, each with its deliveries and its schedule's
    timezone (`herald runs --json`)."""
    query = select(ReportRun).order_by(ReportRun.scheduled_for.desc(), ReportRun.id.desc()).limit(limit)
    if isinstance(who, Viewer):
        query = query.where(ReportRun.tenant_id.in_(list(who.roles)))
    if tenant_slug is not None:
        query = query.join(Tenant, Tenant.id == ReportRun.tenant_id).where(Tenant.slug == tenant_slug)
    if schedule_id is not None:
        query = query.where(ReportRun.schedule_id == schedule_id)
    runs = list(session.exec(query))
    deliveries: dict[int, list[Delivery]] = {}
    zones: dict[int, str] = {}
    if runs:
        for d in session.exec(select(Delivery).where(Delivery.run_id.in_([r.id for r in runs]))
                              .order_by(Delivery.id)):
            deliveries.setdefault(d.run_id, []).append(d)
        zones = dict(session.execute(sa.select(Schedule.id, Schedule.timezone).where(
            Schedule.id.in_({r.schedule_id for r in runs}))).all())
    return [{**run_to_dict(run, deliveries.get(run.id, [])), "timezone": zones[run.schedule_id]}
            for run in runs]


def run_record(session: Session, run_id: int) -> dict[str, Any]:
    run = session.get(ReportRun, run_id)
    deliveries = session.exec(select(Delivery).where(Delivery.run_id == run_id).order_by(Delivery.id))
    return run_to_dict(run, list(deliveries))


def run_to_dict(run: ReportRun, deliveries: list[Delivery]) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": run.id, "schedule_id": run.schedule_id, "tenant_id": run.tenant_id,
        "scheduled_for": iso(run.scheduled_for), "manual": run.manual, "test": run.test,
        "test_recipients": run.test_recipients, "requested_by": run.requested_by, "status": run.status,
        "attempts": run.attempts, "queued_at": iso(run.queued_at), "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        # A skipped run's `error` column holds why it sent nothing: shown as its reason.
        "error": None if run.status == RunStatus.SKIPPED else run.error,
        "reason": run.error if run.status == RunStatus.SKIPPED else None,
        "deliveries": [{"channel": d.channel, "recipient": d.recipient, "status": d.status,
                        "attempts": d.attempts, "error": d.error,
                        "provider_message_id": d.provider_message_id} for d in deliveries],
    }
