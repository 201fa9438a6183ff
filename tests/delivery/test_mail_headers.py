"""Text stored before validation existed cannot add headers to a message: line breaks and
other control characters in a subject, a tenant name or a report title become spaces, and
the message still goes out, to its recipients only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.db import session_scope
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline.in_process import run_in_process
from pipeline.letter import header_text, render_subject
from tests.delivery.conftest import make_schedule
from tests.delivery.servers import Mail, MailSink
from tests.delivery.test_deliver_stage import manual_run, state

READER = "anna@acme.example"
on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def header(mail: Mail, name: str) -> list[bytes]:
    """The physical lines of header `name` as received: its first line and any continuations."""
    lines, found = mail.header_lines(), []
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower().encode() + b":"):
            found.append(line)
            found += [more for more in lines[i + 1:] if more[:1] in (b" ", b"\t")][:1]
    return found


@on_sqlite
def test_a_subject_with_a_line_break_sends_one_message_with_a_one_line_subject(
    db_url: str, videos_file: str, mail_sink: MailSink
) -> None:
    # Given a schedule whose subject was written straight into the database with CR LF in it
    schedule_id = make_schedule(videos_file, emails=[READER], formats=["csv"])
    with session_scope() as session:
        session.execute(sa.update(Schedule).where(Schedule.id == schedule_id)
                        .values(subject="Hi\r\nBcc: x@evil.example"))

    run_id = manual_run(schedule_id)
    run_in_process(run_id)

    # Then the reader got one message whose Subject is one line, and there is no Bcc header
    [mail] = mail_sink.mails
    assert mail.rcpt_tos == [READER]
    assert header(mail, "Subject") == [b"Subject: Hi Bcc: x@evil.example"]
    assert header(mail, "Bcc") == [] and "Bcc" not in mail.message
    # and nothing went to the address smuggled into it
    assert mail_sink.to("x@evil.example") == [] and set(mail_sink.rcpt_attempts) == {READER}
    run, _, deliveries = state(run_id)
    assert deliveries[READER].status == "sent" and run.status == "success"


@on_sqlite
def test_a_tenant_name_with_a_line_break_stays_one_line_in_from_and_subject(
    db_url: str, videos_file: str, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAIL_FROM without a name (the tenant's name is shown) and a tenant name with CR LF
    monkeypatch.setenv("MAIL_FROM", "reports@acme.example")
    get_settings.cache_clear()
    schedule_id = make_schedule(videos_file, emails=[READER], formats=["csv"],
                                subject="{title} for {tenant}")
    with session_scope() as session:
        session.execute(sa.update(Tenant).values(name="Acme\r\nBcc: x@evil.example\x85Corp"))

    run_in_process(run_id := manual_run(schedule_id))

    # Then From and Subject are each one line, with the name's breaks as spaces
    [mail] = mail_sink.mails
    assert header(mail, "From") == [b'From: "Acme Bcc: x@evil.example Corp" <reports@acme.example>']
    assert mail.message["Subject"] == "Video performance for Acme Bcc: x@evil.example Corp"
    assert len(header(mail, "Subject")) == 1 and "Bcc" not in mail.message
    assert mail.rcpt_tos == [READER] and state(run_id)[0].status == "success"


def test_every_control_character_becomes_a_space() -> None:
    assert header_text("a\rb\nc\td\x00e\x1bf\x7fg\x85h\x9fi") == "a b c d e f g h i"
    assert header_text("Hi\r\n\r\nBcc: x") == "Hi Bcc: x"  # a run of them is one space
    assert header_text("Ünïcode — ✓ stays") == "Ünïcode — ✓ stays"
    # a report title stored with a line break, in the default subject
    assert render_subject(None, "Video\r\nperformance", "2026-11-22", "Acme") == \
        "Video performance — 2026-11-22"
