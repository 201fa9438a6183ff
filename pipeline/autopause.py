"""Auto-pause: a schedule whose last runs all FAILED stops firing, and its tenant's admins are
told why and how to resume it.

`pause_if_failing` is called by `pipeline.lifecycle.end_run`, in the transaction that records a
run's end, with the schedule's row locked: the pause is decided once per end, and a redelivered
message (which finds the run already ended, or the schedule already paused) changes nothing.
The e-mails go out after that transaction commits, so a rolled-back pause sends nothing; a
failed e-mail is logged and never fails the run.

Only FAILED counts (nothing was delivered). PARTIAL does not: one bouncing recipient must not
stop everyone else's report. Test runs ("send a test to…") do not count either way.
"""

from __future__ import annotations

import logging
import smtplib
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import formatdate

import sqlalchemy as sa
from sqlmodel import Session

from delivery.base import DeliveryError
from delivery.mail import MailSender, classify
from models.audit import SYSTEM
from models.cron import describe_or_none
from models.redact import redact
from models.reports import Report
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule, set_active
from models.settings import Settings, get_settings
from models.tenancy import Membership, Role, Tenant, User

log = logging.getLogger("herald.autopause")
RUNS = ReportRun.__table__
_PENDING = "herald_autopause_notices"  # Session.info key: notices waiting for the commit
_ERROR_SHOWN = 300                      # characters of the last error kept in the reason


@dataclass(frozen=True)
class Notice:
    """One e-mail telling a tenant admin that herald paused a schedule."""

    recipient: str
    subject: str
    body: str
    message_id_key: str  # unique per notice; the Message-ID is derived from it


def pause_if_failing(session: Session, run: ReportRun, now: datetime) -> Schedule | None:
    """Pause the run's schedule if this end makes its last `HERALD_AUTOPAUSE_AFTER` runs all
    FAILED; returns the schedule when it paused it. Call after the run's end is set."""
    limit = get_settings().autopause_after
    if run.test or RunStatus(run.status) != RunStatus.FAILED or limit == 0:
        return None
    session.flush()  # the run's end (and the schedule's last status) are part of what is read
    schedule = session.get(Schedule, run.schedule_id)
    # PostgreSQL: FOR NO KEY UPDATE, so two runs ending at once pause (and e-mail) once; new
    # runs of the schedule may still be inserted meanwhile. SQLite: the write lock is held.
    session.refresh(schedule, with_for_update={"key_share": True})
    if not schedule.active or schedule.deleted_at is not None:
        return None
    failed = failed_in_a_row(session, schedule.id, limit)
    if failed is None:
        return None
    reason = pause_reason(limit, run.error)
    set_active(session, schedule, False, now, actor=SYSTEM, reason=reason)
    log.warning("schedule %s paused: %s", schedule.id, reason)
    for notice in notices(session, schedule, reason, failed):
        _send_after_commit(session, notice)
    return schedule


def failed_in_a_row(session: Session, schedule_id: int, count: int) -> list[int] | None:
    """The ids of the schedule's last `count` non-test runs (newest first) when all of them
    FAILED; None when there are fewer, or one of them did not fail."""
    last = session.execute(
        sa.select(RUNS.c.id, RUNS.c.status)
        # A skipped run (send_if not met) neither breaks nor extends a streak of failures.
        .where(RUNS.c.schedule_id == schedule_id, RUNS.c.test.is_(False),
               RUNS.c.status != RunStatus.SKIPPED)
        .order_by(RUNS.c.scheduled_for.desc(), RUNS.c.id.desc())
        .limit(count)).all()
    if len(last) < count or any(r.status != RunStatus.FAILED for r in last):
        return None
    return [r.id for r in last]


def pause_reason(count: int, error: str | None) -> str:
    """What the schedule and the e-mail say, e.g. "Paused automatically after 3 failed runs in
    a row; the last error: …"."""
    lines = (error or "").strip().splitlines()
    first = lines[0].strip().rstrip(".") if lines else ""
    if len(first) > _ERROR_SHOWN:
        first = first[:_ERROR_SHOWN - 1].rstrip() + "…"
    runs = "a failed run" if count == 1 else f"{count} failed runs in a row"
    head = f"Paused automatically after {runs}"
    # The run's error as this process holds it is not yet redacted (the column redacts on write).
    return redact(f"{head}; the last error: {first}.") if first else f"{head}."


def admin_emails(session: Session, tenant_id: int) -> list[str]:
    """The e-mail addresses of the tenant's active admins."""
    return list(session.execute(
        sa.select(User.email).join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id, Membership.role == Role.ADMIN,
               User.active.is_(True))
        .order_by(User.email)).scalars())


def notices(session: Session, schedule: Schedule, reason: str, failed: list[int]) -> list[Notice]:
    """One notice per active tenant admin, saying why and how to resume."""
    report = session.get(Report, schedule.report_id)
    tenant = session.get(Tenant, schedule.tenant_id)
    when = describe_or_none(schedule.cron) or schedule.cron
    subject = f"herald paused “{report.title}” (schedule {schedule.id})"
    admin = get_settings().admin_url  # links to the run and the schedules, when it is known
    links = "" if not admin else (
        f"  The last failed run: {admin}/history?"
        f"{urllib.parse.urlencode({'run': failed[0], 'tenant': tenant.slug})}\n"
        f"  The schedules: {admin}/schedules?{urllib.parse.urlencode({'tenant': tenant.slug})}\n")
    body = (
        f"herald paused schedule {schedule.id} of {tenant.name}: “{report.title}”, "
        f"{when} ({schedule.timezone}).\n\n"
        f"{reason}\n\n"
        f"The runs that failed, newest first: {', '.join(map(str, failed))}.\n"
        f"{links}"
        f"It does not fire again until it is resumed. Fix the cause, then resume it:\n"
        f"  - in herald's admin: Schedules, pick schedule {schedule.id}, press Resume; or\n"
        f"  - from a shell: herald schedule resume {schedule.id}\n\n"
        f"You get this because you are an admin of {tenant.name} in herald.\n")
    key = f"run-{failed[0]}.paused-schedule-{schedule.id}"
    return [Notice(recipient=email, subject=subject, body=body, message_id_key=f"{key}.{i}")
            for i, email in enumerate(admin_emails(session, schedule.tenant_id))]


class NoticeSender(MailSender):
    """herald's own plain-text notices, over the same SMTP path as reports (TLS, login)."""

    def send_notice(self, notice: Notice) -> None:
        """Send one notice; raises DeliveryError (classified as report sends are)."""
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = self.settings.mail_from
        message["To"] = notice.recipient
        message["Subject"] = notice.subject
        message["Date"] = formatdate(localtime=True)
        domain = self.from_addr.rpartition("@")[2] or "herald.localhost"
        message["Message-ID"] = f"<herald.{notice.message_id_key}@{domain}>"
        message.set_content(notice.body)
        try:
            if self._client is None:
                self._client = self._connect()
            utf8 = not notice.recipient.isascii()
            self._client.send_message(message, self.from_addr, [notice.recipient],
                                      mail_options=["SMTPUTF8"] if utf8 else ())
        except DeliveryError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            error = classify(exc, self.where)
            if error.channel_wide:
                self.close()
            raise error from None


def send_notices(pending: list[Notice], settings: Settings) -> int:
    """Send each notice; returns how many were sent. Failures are logged, never raised."""
    if not pending:
        return 0
    sent = 0
    try:
        sender = NoticeSender(settings)
    except DeliveryError as exc:
        log.warning("could not e-mail %d pause notice(s): %s", len(pending), exc)
        return 0
    try:
        for notice in pending:
            try:
                sender.send_notice(notice)
                sent += 1
            except DeliveryError as exc:
                log.warning("could not e-mail the pause notice to %s: %s", notice.recipient, exc)
                if exc.channel_wide:
                    break
    except Exception as exc:  # a notice is a courtesy: never let it fail the run
        log.warning("pause notices stopped: %s: %s", type(exc).__name__, exc)
    finally:
        sender.close()
    return sent


def _send_after_commit(session: Session, notice: Notice) -> None:
    """Queue `notice` on the session; it is sent once the transaction commits, dropped if it
    rolls back."""
    if not sa.event.contains(session, "after_commit", _on_commit):
        sa.event.listen(session, "after_commit", _on_commit)
        sa.event.listen(session, "after_rollback", _on_rollback)
    session.info.setdefault(_PENDING, []).append(notice)


def _on_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if pending:
        send_notices(pending, get_settings())


def _on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
