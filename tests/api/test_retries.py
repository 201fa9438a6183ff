"""Safe retries of the requests that send: an `Idempotency-Key` replay answers the first response
and sends nothing again; a send-now the broker did not take answers 503 and leaves no run for the
tick to send later (over HTTP here; at the command line in tests/cli/test_when_services_fail.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from jobs.tick import tick
from models.audit import ChangeEvent
from models.db import session_scope, utcnow
from models.errors import BrokerUnavailable
from models.idempotency import IdempotentRequest, purge_idempotency_keys
from models.runs import ReportRun
from models.settings import get_settings
from services import idempotency, runs
from services.access import ApiClient
from tests.api.conftest import Api, World, start_api, stop_api
from tests.delivery.servers import MailSink, free_port
from tests.jobs.helpers import in_process
from tests.seeding import count_rows

PROBLEM = "application/problem+json"


def _two_reader_schedule(client) -> int:
    made = client.post("/api/v1/schedules", json={
        "report": "video-performance", "cron": "0 9 * * *", "formats": ["csv"],
        "email": ["one@acme.example", "two@acme.example"]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_a_replayed_send_now_answers_the_same_run_and_sends_nothing_again(
    mail_sink: MailSink, api: Api, world: World, session: Session
) -> None:
    client = api.client(world.token("schedules.read", "schedules.write"))
    schedule = _two_reader_schedule(client)

    first = client.post(f"/api/v1/schedules/{schedule}/send", headers={"Idempotency-Key": "k-1"})
    again = client.post(f"/api/v1/schedules/{schedule}/send", headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert sorted(m.rcpt_tos[0] for m in mail_sink.mails) == ["one@acme.example", "two@acme.example"]
    session.rollback()
    assert session.exec(select(sa.func.count()).select_from(ReportRun)
                        .where(ReportRun.schedule_id == schedule)).one() == 1
    sends = session.exec(select(ChangeEvent).where(ChangeEvent.action == "sent now")).all()
    assert len(sends) == 1

    # Another key is another request; the same key for another request is refused.
    other = client.post(f"/api/v1/schedules/{schedule}/send", headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 202 and other.json()["run_id"] != first.json()["run_id"]
    assert len(mail_sink.mails) == 4
    misused = client.post(f"/api/v1/schedules/{schedule}/test", json={"email": ["qa@acme.example"]},
                          headers={"Idempotency-Key": "k-1"})
    assert misused.status_code == 422 and misused.headers["content-type"] == PROBLEM
    assert misused.json()["detail"] == ("Idempotency-Key 'k-1' was sent before with a different "
                                        "request; send a new key for a new request.")
    bad = client.post(f"/api/v1/schedules/{schedule}/send", headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("Idempotency-Key must be")
    assert len(mail_sink.mails) == 4


def test_a_replayed_test_send_and_resend_send_nothing_again(
    mail_sink: MailSink, api: Api, world: World
) -> None:
    client = api.client(world.token("schedules.read", "schedules.write"))
    body = {"email": ["qa@acme.example"]}
    answers = [client.post(f"/api/v1/schedules/{world.schedule}/test", json=body,
                           headers={"Idempotency-Key": "t-1"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202] and answers[0].json() == answers[1].json()
    assert [m.rcpt_tos for m in mail_sink.mails] == [["qa@acme.example"]]

    mail_sink.refuse["boss@acme.example"] = (550, "No such user")
    failed = client.post(f"/api/v1/schedules/{world.schedule}/send").json()
    assert failed["status"] == "failed", failed
    del mail_sink.refuse["boss@acme.example"]
    resends = [client.post(f"/api/v1/runs/{failed['run_id']}/resend",
                           headers={"Idempotency-Key": "r-1"}) for _ in range(2)]
    assert [r.status_code for r in resends] == [202, 202], resends[0].text
    assert resends[0].json() == resends[1].json()
    assert resends[0].json()["resent"] == [{"channel": "email", "recipient": "boss@acme.example"}]
    assert len(mail_sink.to("boss@acme.example")) == 1


def test_the_same_key_at_once_sends_once(mail_sink: MailSink, api: Api, world: World,
                                         session: Session) -> None:
    client = api.client(world.token("schedules.write"))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(f"/api/v1/schedules/{world.schedule}/send",
                                                      headers={"Idempotency-Key": "same"}), range(8)))
    # Each answer is the first one (202, maybe replayed) or "still under way" (409): never a second run.
    assert {a.status_code for a in answers} <= {202, 409}, [a.text for a in answers]
    assert len({a.json()["run_id"] for a in answers if a.status_code == 202}) == 1
    for a in answers:
        if a.status_code == 409:
            assert a.json()["detail"].startswith("The request first sent with Idempotency-Key 'same' "
                                                 "has not finished")
    assert len(mail_sink.mails) == 1
    session.rollback()
    assert count_rows(session, ReportRun) == 1


def test_a_failed_send_gives_its_key_back_and_keys_are_purged_after_a_day(
    world: World, session: Session
) -> None:
    caller = ApiClient(world.acme, frozenset({"schedules.write"}), "token herald_test (t)", 1)
    now = utcnow()

    def down(runs_: list) -> None:
        raise BrokerUnavailable("The broker at REDIS_URL does not answer (ConnectionError)")

    def send(dispatch):
        return lambda: idempotency.Answer(202, {"run_id": runs.send_now(
            session, caller, world.schedule, now=now, dispatch=dispatch).run_id})

    with pytest.raises(BrokerUnavailable):
        idempotency.once(session, caller, "k", "print", now, send(down))
    assert count_rows(session, ReportRun) == 0 and count_rows(session, IdempotentRequest) == 0
    answer, replayed = idempotency.once(session, caller, "k", "print", now, send(lambda runs_: None))
    assert not replayed and count_rows(session, ReportRun) == 1
    assert idempotency.once(session, caller, "k", "print", now, send(down)) == (answer, True)
    session.rollback()

    with session_scope() as purging:
        assert purge_idempotency_keys(purging, now + timedelta(hours=23)) == 0
        assert purge_idempotency_keys(purging, now + timedelta(hours=25)) == 1


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """REDIS_URL at a port where nothing listens."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()
    return url


def test_with_redis_unreachable_send_now_answers_503_and_leaves_no_run(
    db_url: str, world: World, session: Session, tmp_path: Path, redis_down: str
) -> None:
    api = start_api(tmp_path, {"RENDER_PDF_STUB": "true"})
    try:
        client = api.client(world.token("schedules.read", "schedules.write"))
        for key in ({}, {"Idempotency-Key": "down-1"}):
            sent = client.post(f"/api/v1/schedules/{world.schedule}/send", headers=key)
            assert sent.status_code == 503 and sent.headers["content-type"] == PROBLEM
            assert sent.json()["detail"] == (
                f"Redis at REDIS_URL (127.0.0.1:{redis_down.rsplit(':', 1)[1].split('/')[0]}) does "
                f"not answer (Connection refused); nothing was sent or queued: send again once it "
                f"answers.")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("Redis at REDIS_URL (127.0.0.1:")
    finally:
        stop_api(api)
    session.rollback()
    assert count_rows(session, ReportRun) == 0          # nothing for the tick to send later
    assert count_rows(session, IdempotentRequest) == 0  # the key is free for the retry
    assert session.exec(select(ChangeEvent).where(ChangeEvent.action == "sent now")).all() == []
    assert tick(utcnow() + timedelta(minutes=1), in_process).requeued == []


def test_with_redis_unreachable_a_resend_changes_nothing(
    world: World, session: Session, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is asked before the run is reopened: the failed run stays failed, its
    deliveries failed, no resend is recorded, and the tick finds nothing to send."""
    import dramatiq

    from jobs.broker import build_broker
    from models.runs import Delivery, DeliveryStatus, RunStatus

    caller = ApiClient(world.acme, frozenset({"schedules.write"}), "token herald_test (t)", 1)
    mail_sink.refuse["boss@acme.example"] = (550, "No such user")
    failed = runs.send_now(session, caller, world.schedule, now=utcnow(), dispatch=in_process)
    assert failed.status == "failed"
    del mail_sink.refuse["boss@acme.example"]

    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    get_settings.cache_clear()
    previous = dramatiq.broker.global_broker
    dramatiq.set_broker(build_broker(get_settings()))   # as `herald resend` builds it
    try:
        with pytest.raises(BrokerUnavailable) as refused:
            runs.resend_failed(session, caller, failed.run_id, now=utcnow())
    finally:
        dramatiq.broker.global_broker = previous
    assert str(refused.value) == (
        f"Redis at REDIS_URL (127.0.0.1:{port}) does not answer (Connection refused); nothing was "
        f"resent (run "
        f"{failed.run_id} is failed as before): resend once it answers.")
    session.rollback()
    assert session.get(ReportRun, failed.run_id).status == RunStatus.FAILED
    assert [d.status for d in session.exec(select(Delivery)).all()] == [DeliveryStatus.FAILED]
    assert session.exec(select(ChangeEvent).where(ChangeEvent.action == "resend")).all() == []
    assert tick(utcnow() + timedelta(minutes=1), in_process).requeued == []
    assert len(mail_sink.to("boss@acme.example")) == 0
