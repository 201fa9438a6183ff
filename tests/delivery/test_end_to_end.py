"""tick → query → render → deliver through Redis and real `dramatiq jobs` workers, and a
worker SIGKILLed in the middle of sending: nobody is left out, nobody gets a second
message that isn't recognisably the same one."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from models import migrate
from models.db import session_scope, utcnow
from models.runs import FINAL_RUN_STATES, Delivery, ReportRun, RunStatus
from models.schedules import Schedule
from tests.delivery.conftest import SENDER, TOKEN, make_schedule
from tests.delivery.servers import BotApi, MailSink
from tests.delivery.test_deliver_stage import (
    CHATS,
    EMAILS,
    assert_everyone_got_both_documents,
    state,
)
from tests.jobs.test_worker_recovery import kill_group, start_worker, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def control(create_pg_database, redis_namespace: str, mail_sink: MailSink, bot_api: BotApi
            ) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated control database, and the environment a worker process needs."""
    url = create_pg_database()
    migrate.upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": os.environ["REDIS_URL"],
           "HERALD_REDIS_NAMESPACE": redis_namespace, "HERALD_LEASE_SECONDS": "6",
           "HERALD_REQUEUE_AFTER_SECONDS": "30", "RENDER_PDF_STUB": "false",
           "MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(mail_sink.port), "MAIL_FROM": SENDER,
           "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": bot_api.url,
           "HERALD_DELIVERY_BACKOFF_SECONDS": "0.2", "HERALD_DELIVERY_BACKOFF_MAX_SECONDS": "1"}
    yield url, env


def due_now(url: str, datasource: str) -> None:
    """The five-recipient schedule, due this minute and next due tomorrow."""
    schedule_id = make_schedule(datasource, emails=EMAILS, chats=CHATS, url=url,
                                subject="{title} for {tenant}, {date}")
    slot = utcnow().replace(second=0, microsecond=0)
    with session_scope(url) as session:
        schedule = session.get(Schedule, schedule_id)
        schedule.cron, schedule.next_run_at = f"{slot.minute} {slot.hour} * * *", slot


def the_run(url: str) -> ReportRun | None:
    with session_scope(url) as session:
        return session.execute(sa.select(ReportRun)).scalars().first()


def first_is_recorded(url: str) -> bool:
    with session_scope(url) as session:
        status = session.execute(sa.select(Delivery.status).where(Delivery.recipient == EMAILS[0])).scalar()
    return status == "sent"


def tick(env: dict[str, str]) -> None:
    subprocess.run(["herald", "tick"], env=env, check=True, capture_output=True, timeout=60)


def test_tick_to_inbox_through_redis_and_workers(
    control, videos_db: str, mail_sink: MailSink, bot_api: BotApi, tmp_path: Path
) -> None:
    url, env = control
    due_now(url, videos_db)
    worker = start_worker(env)
    try:
        tick(env)
        finished = wait_for(lambda: (r := the_run(url)) and r.status in FINAL_RUN_STATES and r,
                            timeout=120, every=0.5)
    finally:
        kill_group(worker, signal.SIGTERM)
    assert finished.manual is False and finished.attempts == 1
    assert_everyone_got_both_documents(finished.id, videos_db, mail_sink, bot_api, tmp_path, url)


def test_a_worker_killed_mid_delivery_leaves_nobody_out_and_resends_recognisably(
    control, videos_db: str, mail_sink: MailSink, bot_api: BotApi
) -> None:
    url, env = control
    due_now(url, videos_db)
    # The mail server keeps the second message, then holds back its "250": the worst
    # moment to die, since the recipient has it and herald cannot know.
    stall = mail_sink.stall_after_accepting(EMAILS[1])
    worker_a = start_worker(env)
    worker_b = None
    try:
        tick(env)
        assert stall.reached.wait(120), "the delivery never reached the mail server"
        # the first message's stamp is written by a background thread: let it land, so the
        # kill falls exactly while the second message is in flight
        wait_for(lambda: first_is_recorded(url), timeout=30, every=0.05)
        kill_group(worker_a)
        threading.Timer(1.0, stall.release.set).start()
        worker_b = start_worker(env)
        finished = wait_for(lambda: (r := the_run(url)) and r.status in FINAL_RUN_STATES and r,
                            timeout=150, every=1.0, between=lambda: tick(env))
    finally:
        kill_group(worker_a)
        if worker_b is not None:
            kill_group(worker_b, signal.SIGTERM)

    assert finished.status == RunStatus.SUCCESS
    _, _, deliveries = state(finished.id, url)
    # Every address has its message; the one in flight was sent again with the same Message-ID
    for address in EMAILS:
        mails = mail_sink.to(address)
        assert mails, f"{address} was left out"
        assert {m.message_id for m in mails} == {deliveries[address].provider_message_id}
    assert [len(mail_sink.to(a)) for a in EMAILS] == [1, 2, 1]
    assert deliveries[EMAILS[1]].attempts == 2
    # and every chat has exactly one PDF and one CSV
    for chat in CHATS:
        names = sorted(d.filename.rsplit(".", 1)[1] for d in bot_api.to(chat))
        assert names == ["csv", "pdf"]
