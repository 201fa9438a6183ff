"""Send a test to…: through the real pipeline and a real SMTP server, a test run reaches only
the address typed, and leaves the schedule's last status as it was."""

from __future__ import annotations

from sqlmodel import Session, select

from models.db import utcnow
from models.runs import Delivery, ReportRun
from models.schedules import Schedule
from models.tenancy import Membership, Role, User
from services.access import load_viewer
from services.runs import send_now, send_test

# The delivery tests' fixtures: a real SMTP server (aiosmtpd) and a SQLite tenant data source.
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process

OWN, TYPED, NORMALISED = "boss@acme.example", "Tester@Example.COM", "Tester@example.com"


def test_a_test_run_reaches_only_the_typed_address(
    session: Session, videos_file: str, mail_sink: MailSink  # noqa: F811 - fixtures imported above
) -> None:
    schedule_id = make_schedule(videos_file, emails=[OWN], formats=("csv",))
    schedule = session.get(Schedule, schedule_id)
    schedule.last_status, schedule.last_error = "partial", "1 of 2 deliveries failed: earlier"
    user = User(email="ed@acme.example", password_hash="x")
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, tenant_id=schedule.tenant_id, role=Role.EDITOR))
    session.commit()
    editor = load_viewer(session, user.id)

    sent = send_test(session, editor, schedule_id, now=utcnow(), emails=[TYPED],
                     dispatch=in_process)

    assert (sent.status, sent.test) == ("success", True)
    assert [m.rcpt_tos for m in mail_sink.mails] == [[NORMALISED]]  # nobody else: not OWN
    [mail] = mail_sink.mails
    assert [name.endswith(".csv") for name in mail.attachments()] == [True]
    session.expire_all()
    deliveries = session.exec(select(Delivery).where(Delivery.run_id == sent.run_id)).all()
    assert [(d.channel, d.recipient, d.status) for d in deliveries] == [
        ("email", NORMALISED, "sent")]
    run = session.get(ReportRun, sent.run_id)
    assert (run.test, run.manual, run.requested_by) == (True, True, "ed@acme.example")
    schedule = session.get(Schedule, schedule_id)
    assert (schedule.last_status, schedule.last_error) == ("partial", "1 of 2 deliveries failed: earlier")

    # the same schedule sent now reaches its own recipient, and its status follows
    sent = send_now(session, editor, schedule_id, now=utcnow(), dispatch=in_process)
    assert sent.status == "success"
    assert [m.rcpt_tos for m in mail_sink.mails][1:] == [[OWN]]
    session.expire_all()
    assert session.get(Schedule, schedule_id).last_status == "success"
