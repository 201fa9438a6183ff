"""The deliver stage against a real SMTP server and a Bot API server: each recipient gets
exactly one message with both documents; failures are classified, recorded, and only
retried when retrying can help."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from models.base import Channel
from models.db import session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun
from models.schedules import Schedule
from models.settings import get_settings
from pipeline.deliver import deliver_run
from pipeline.deliveries import DELIVERIES, Stamper, outcome_stamp, plan_deliveries, take_deliveries
from pipeline.in_process import run_in_process
from pipeline.lifecycle import create_manual_run, move
from tests.delivery.conftest import (
    ROWS,
    TOKEN,
    csv_rows,
    make_schedule,
    source_rows,
    total_views,
)
from tests.delivery.servers import BotApi, MailSink
from tests.renderers.conftest import pdf_text

EMAILS = ["anna@acme.example", "boris@acme.example", "chen@acme.example"]
CHATS = ["1001", "-1002003004005"]


def manual_run(schedule_id: int) -> int:
    with session_scope() as session:
        return create_manual_run(session, session.get(Schedule, schedule_id), utcnow(), "cli").id


def state(run_id: int, url: str | None = None) -> tuple[ReportRun, Schedule, dict[str, Delivery]]:
    with session_scope(url) as session:
        run = session.get(ReportRun, run_id)
        schedule = session.get(Schedule, run.schedule_id)
        deliveries = session.exec(select(Delivery).where(Delivery.run_id == run_id)).all()
        return run, schedule, {d.recipient: d for d in deliveries}


def test_each_recipient_gets_exactly_one_message_with_both_documents(
    db_url: str, videos_db: str, mail_sink: MailSink, bot_api: BotApi, tmp_path: Path
) -> None:
    # Given a schedule for 3 e-mail addresses and 2 Telegram chats, PDF and CSV
    schedule_id = make_schedule(videos_db, emails=EMAILS, chats=CHATS,
                                subject="{title} for {tenant}, {date}")
    run_id = manual_run(schedule_id)

    # When its run goes through query, render and deliver
    run_in_process(run_id)

    # Then each recipient received exactly one message carrying both documents
    assert_everyone_got_both_documents(run_id, videos_db, mail_sink, bot_api, tmp_path)


def assert_everyone_got_both_documents(run_id: int, videos_db: str, mail_sink: MailSink,
                                       bot_api: BotApi, tmp_path: Path, url: str | None = None) -> None:
    """3 e-mails and 2 chats, one message each with the PDF and the CSV, all recorded as sent."""
    run, schedule, deliveries = state(run_id, url)
    expected_rows = source_rows(videos_db)
    for address in EMAILS:
        [mail] = mail_sink.to(address)
        files = mail.attachments()
        pdf_name, csv_name = sorted(files, key=lambda n: not n.endswith(".pdf"))
        assert pdf_name.endswith(".pdf") and csv_name.endswith(".csv")
        text = pdf_text(files[pdf_name], tmp_path).replace("\u202f", " ")
        assert "Video performance" in text and "Acme Corp" in text
        assert f"{total_views(videos_db):,}" in text  # the KPI, from the data
        assert csv_rows(files[csv_name])[1:] == expected_rows
        assert mail.attachment_types()[csv_name] == 'text/csv; charset=utf-8'
        assert len(expected_rows) == ROWS // 2
        assert mail.message["Subject"].startswith("Video performance for Acme Corp, ")
        assert mail.message["To"] == address
        assert mail.message["From"] == "Acme Reports <reports@acme.example>"
        assert "Total views" in mail.html() and "<" not in mail.text()  # a real text part
        assert deliveries[address].provider_message_id == mail.message_id
    # each message has its own Message-ID, derived from its delivery
    assert len({mail_sink.to(a)[0].message_id for a in EMAILS}) == 3
    emailed = mail_sink.to(EMAILS[0])[0].attachments()

    # and every chat received the same two documents, once each, with a caption
    for chat in CHATS:
        documents = bot_api.to(chat)
        assert sorted(d.filename for d in documents) == sorted(emailed)
        assert {d.filename: d.content for d in documents} == emailed
        assert "Video performance" in documents[0].caption
        assert bot_api.requests[chat] == 2

    # and the run, its schedule and its five deliveries say so
    assert run.status == "success" and run.error is None
    assert schedule.last_status == "success" and schedule.last_error is None
    assert {(d.channel, d.status, d.attempts) for d in deliveries.values()} == {
        ("email", "sent", 1), ("telegram", "sent", 1)}
    assert len(deliveries) == 5
    assert all(d.finished_at and d.duration_ms is not None for d in deliveries.values())


def test_a_refused_address_and_an_unknown_chat_fail_alone_and_are_not_retried(
    db_url: str, videos_db: str, mail_sink: MailSink, bot_api: BotApi
) -> None:
    # Given one address the mail server refuses for good, and a chat Telegram doesn't know
    mail_sink.refuse["gone@acme.example"] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    bot_api.errors["777"] = (400, "Bad Request: chat not found")
    schedule_id = make_schedule(videos_db, emails=[*EMAILS[:2], "gone@acme.example"],
                                chats=["777", CHATS[0]], formats=["csv"])
    run_id = manual_run(schedule_id)

    run_in_process(run_id)

    # Then everyone else received exactly once
    run, schedule, deliveries = state(run_id)
    for address in EMAILS[:2]:
        assert len(mail_sink.to(address)) == 1
    assert len(bot_api.to(CHATS[0])) == 1
    assert mail_sink.to("gone@acme.example") == []
    # and the two failures are recorded, each after a single attempt (no retries)
    gone, unknown = deliveries["gone@acme.example"], deliveries["777"]
    assert (gone.status, gone.attempts) == ("failed", 1)
    assert "550" in gone.error and "mailbox unavailable" in gone.error
    assert (unknown.status, unknown.attempts) == ("failed", 1)
    assert "chat not found" in unknown.error
    assert mail_sink.rcpt_attempts["gone@acme.example"] == 1 and bot_api.requests["777"] == 1
    # and the run is PARTIAL, naming both, and so is its schedule
    assert run.status == "partial"
    assert run.error.startswith("2 of 5 deliveries failed") and "gone@acme.example" in run.error
    assert "777" in run.error
    assert (schedule.last_status, schedule.last_error) == ("partial", run.error)


def test_a_mail_server_down_for_the_first_attempts_gets_each_message_once(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given the mail server is down when the run starts
    mail_sink.stop()
    schedule_id = make_schedule(videos_db, emails=EMAILS, formats=["csv"])
    run_id = manual_run(schedule_id)
    worker = threading.Thread(target=run_in_process, args=(run_id,))
    worker.start()

    # When it comes back after the first attempts failed
    def attempts() -> int:
        return min(d.attempts for d in state(run_id)[2].values()) if state(run_id)[2] else 0

    deadline = time.monotonic() + 30
    while attempts() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = state(run_id)[2][EMAILS[0]].error
    mail_sink.start()
    worker.join(timeout=60)

    # Then each address got exactly one message, after more than one attempt
    assert "refused the connection" in refused
    run, _, deliveries = state(run_id)
    for address in EMAILS:
        assert len(mail_sink.to(address)) == 1
        assert deliveries[address].status == "sent" and deliveries[address].attempts > 1
        assert deliveries[address].error is None
    assert run.status == "success"


def test_telegram_429_waits_its_retry_after_then_sends(
    db_url: str, videos_db: str, bot_api: BotApi
) -> None:
    # Given Telegram answers the first send to a chat with 429, retry after 2 s
    bot_api.script["1001"] = [(429, 2)]
    run_id = manual_run(make_schedule(videos_db, chats=["1001"], formats=["csv"]))

    run_in_process(run_id)

    # Then herald waited the 2 s and sent it, once
    first, second = bot_api.request_times["1001"]
    assert second - first >= 2.0
    assert len(bot_api.to("1001")) == 1
    run, _, deliveries = state(run_id)
    assert deliveries["1001"].status == "sent" and run.status == "success"


def test_a_failed_second_document_is_resent_alone(db_url: str, videos_db: str, bot_api: BotApi) -> None:
    # Given the Bot API fails the CSV (the chat's second document) once with a 502
    bot_api.script["1001"] = ["ok", 502]
    run_id = manual_run(make_schedule(videos_db, chats=["1001"], formats=["pdf", "csv"]))

    run_in_process(run_id)

    # Then the retry sent only the CSV: the chat holds one PDF and one CSV
    names = [d.filename for d in bot_api.to("1001")]
    assert len(names) == 2 and names[0].endswith(".pdf") and names[1].endswith(".csv")
    assert bot_api.requests["1001"] == 3
    delivery = state(run_id)[2]["1001"]
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert delivery.parts.keys() == {"pdf", "csv"}


def test_two_workers_delivering_the_same_run_send_each_message_once(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given a run rendered and ready to deliver to 20 addresses
    addresses = [f"reader{i}@acme.example" for i in range(20)]
    run_id = manual_run(make_schedule(videos_db, emails=addresses, formats=["csv"]))
    from pipeline.query import query_run
    from pipeline.render import render_run

    assert query_run(run_id) == "render" and render_run(run_id)

    # When the deliver message is redelivered while the first worker is still sending
    with ThreadPoolExecutor(max_workers=2) as pool:
        for outcome in [pool.submit(deliver_run, run_id) for _ in range(2)]:
            outcome.result(timeout=60)  # neither worker fails

    # Then every address got exactly one message
    assert sorted(a for m in mail_sink.mails for a in m.rcpt_tos) == sorted(addresses)
    run, _, deliveries = state(run_id)
    assert run.status == "success" and {d.attempts for d in deliveries.values()} == {1}


def test_unconfigured_channels_fail_with_what_to_set(
    db_url: str, videos_db: str, monkeypatch: pytest.MonkeyPatch, fast_retries
) -> None:
    # Given neither MAIL_SMTP_HOST nor TELEGRAM_BOT_TOKEN is set
    for name in ("MAIL_SMTP_HOST", "MAIL_FROM", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    from models.settings import get_settings

    get_settings.cache_clear()
    run_id = manual_run(make_schedule(videos_db, emails=EMAILS[:1], chats=CHATS[:1], formats=["csv"]))

    run_in_process(run_id)

    run, schedule, deliveries = state(run_id)
    assert deliveries[EMAILS[0]].error.startswith("MAIL_SMTP_HOST is not set")
    assert deliveries[CHATS[0]].error.startswith("TELEGRAM_BOT_TOKEN is not set")
    assert run.status == schedule.last_status == "failed"


def test_a_rejected_bot_token_is_permanent_and_never_written_down(
    db_url: str, videos_db: str, bot_api: BotApi, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    # Given a token the Bot API does not know (it answers 404 for its URL)
    wrong = TOKEN.replace("secret", "wrongs")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", wrong)
    from models.settings import get_settings

    get_settings.cache_clear()
    run_id = manual_run(make_schedule(videos_db, chats=CHATS, formats=["csv"]))

    run_in_process(run_id)

    run, schedule, deliveries = state(run_id)
    assert {d.status for d in deliveries.values()} == {"failed"}
    assert bot_api.rejected == 1  # channel-wide: the second chat is not tried
    assert "check TELEGRAM_BOT_TOKEN" in deliveries[CHATS[0]].error
    written = [run.error, schedule.last_error, *(d.error for d in deliveries.values()), caplog.text]
    assert not any(wrong in (text or "") or "wrongs" in (text or "") for text in written)


def test_a_fresh_plan_is_written_taken_so_no_other_worker_sends_it_meanwhile(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given a run never planned (a fresh run: its rows are written taken by this worker)
    addresses = [f"reader{i}@acme.example" for i in range(3)]
    run_id = manual_run(make_schedule(videos_db, emails=addresses, formats=["csv"]))
    lease, now = timedelta(seconds=60), utcnow()
    with session_scope() as session:
        taken = plan_deliveries(session, run_id, [(Channel.EMAIL, a) for a in addresses], lease)

    # Then they are this worker's, one attempt each, as take_deliveries would have taken them
    assert sorted(d.recipient for d in taken[Channel.EMAIL]) == addresses
    assert {d.attempts for d in taken[Channel.EMAIL]} == {1}
    # ... so another worker takes none of them while the lease holds, and all once it has run out
    assert take_deliveries(run_id, Channel.EMAIL, now, lease, 25) == []
    later = take_deliveries(run_id, Channel.EMAIL, now + lease + timedelta(seconds=1), lease, 25)
    assert sorted(d.recipient for d in later) == addresses and {d.attempts for d in later} == {2}


def test_a_stamp_for_a_delivery_another_worker_settled_is_not_counted_as_this_passs(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given a run's two deliveries, one of them settled by another worker (FAILED)
    run_id = manual_run(make_schedule(videos_db, emails=EMAILS[:2], formats=["csv"]))
    with session_scope() as session:
        taken = plan_deliveries(session, run_id, [(Channel.EMAIL, a) for a in EMAILS[:2]],
                                timedelta(seconds=60))[Channel.EMAIL]
        move(session, DeliveryStatus.PENDING, DeliveryStatus.FAILED, DELIVERIES.c.id == taken[1].id,
             error="550 elsewhere", finished_at=utcnow())

    # When this pass stamps both as sent
    stamper = Stamper()
    try:
        for d in taken:
            stamper.put(outcome_stamp(d, None, f"<{d.id}@herald>", time.perf_counter(), get_settings()))
        stamper.flush()
    finally:
        stamper.close()

    # Then only its own stamp counts as settled by this pass (so the run's end reads the rows),
    # and the other worker's outcome stands
    assert list(stamper.settled) == [taken[0].id]
    _, _, deliveries = state(run_id)
    assert deliveries[EMAILS[0]].status == "sent" and deliveries[EMAILS[1]].status == "failed"
