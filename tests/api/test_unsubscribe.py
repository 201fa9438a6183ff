"""One-click unsubscribe end to end (RFC 8058): with HERALD_PUBLIC_URL set, each delivered
e-mail carries List-Unsubscribe and List-Unsubscribe-Post; a POST to the URL parsed from the
header, as a mail provider sends it, removes that address from that schedule; the next run
leaves it out and still reaches the others. GET changes nothing, a tampered token gets 404
and changes nothing, a second POST changes nothing more; the schedule's change list and the
History show it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, SQLModel, select

from jobs.tick import tick
from models.audit import ChangeEvent
from models.db import session_scope, utcnow
from models.definition import parse_definition
from services import history
from services.access import OPERATOR
from tests.api.conftest import Api, World, start_api, stop_api, token_for
from tests.delivery.conftest import REPORT
from tests.delivery.servers import MailSink, free_port
from tests.jobs.helpers import in_process
from tests.seeding import add_schedule, add_tenant, count_rows, save_report

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def public_api(db_url: str, api_env: None, tmp_path: Path) -> Api:
    port = free_port()
    running = start_api(tmp_path, {"HERALD_PUBLIC_URL": f"http://127.0.0.1:{port}"}, port=port)
    yield running
    stop_api(running)


def unsubscribe_url(mail) -> str:
    """The URL in the message's List-Unsubscribe header, as a mail provider reads it."""
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = re.findall(r"<(https?://[^>]+)>", mail.message["List-Unsubscribe"])
    return url


def test_a_recipient_unsubscribes_with_one_click_and_the_next_run_leaves_them_out(
    mail_sink: MailSink, public_api: Api, world: World, session: Session
) -> None:
    client = public_api.client(world.token("schedules.read", "schedules.write"))
    made = client.post("/api/v1/schedules", json={
        "report": "video-performance", "cron": "* * * * *", "formats": ["csv"],
        "email": ["one@acme.example", "two@acme.example"]})
    schedule = made.json()["id"]
    first = client.post(f"/api/v1/schedules/{schedule}/send").json()
    [to_one], [to_two] = mail_sink.to("one@acme.example"), mail_sink.to("two@acme.example")
    url = unsubscribe_url(to_one)
    assert url.startswith(f"{public_api.url}/unsubscribe/") and unsubscribe_url(to_two) != url
    assert "Your mail program's Unsubscribe stops it" in to_one.text()

    # Following the link shows a page with a button, and changes nothing
    anonymous = public_api.client()
    shown = anonymous.get(url)
    assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
    assert "one@acme.example" in shown.text and '<form method="post">' in shown.text
    assert [r["address"] for r in client.get(f"/api/v1/schedules/{schedule}").json()["recipients"]] == [
        "one@acme.example", "two@acme.example"]

    # A mail provider's one-click POST unsubscribes that address from that schedule
    done = anonymous.post(url, **ONE_CLICK)
    assert done.status_code == 200 and "no longer receives" in done.text
    assert [r["address"] for r in client.get(f"/api/v1/schedules/{schedule}").json()["recipients"]] == [
        "two@acme.example"]
    assert anonymous.post(url, **ONE_CLICK).status_code == 200   # again: nothing more changes
    session.rollback()
    [event] = session.exec(select(ChangeEvent).where(ChangeEvent.action == "unsubscribed")).all()
    assert (event.object_id, event.actor) == (schedule, "one@acme.example (unsubscribe link)")
    assert event.changes["email"] == [["one@acme.example", "two@acme.example"], ["two@acme.example"]]

    # The next run (the tick's) sends to the others only
    mail_sink.mails.clear()
    tick(utcnow() + timedelta(minutes=1), in_process)
    assert [m.rcpt_tos for m in mail_sink.mails] == [["two@acme.example"]]

    # The History marks the earlier delivery to the address that left
    story = history.run_story(session, OPERATOR, first["run_id"])
    marks = {d.recipient: d.unsubscribed_at is not None for d in story.deliveries}
    assert marks == {"one@acme.example": True, "two@acme.example": False}


def test_a_tampered_token_gets_404_and_changes_nothing(
    mail_sink: MailSink, public_api: Api, world: World, session: Session
) -> None:
    client = public_api.client(world.token("schedules.write"))
    client.post(f"/api/v1/schedules/{world.schedule}/send")
    url = unsubscribe_url(mail_sink.to("boss@acme.example")[0])
    token = url.rsplit("/", 1)[1]
    session.rollback()
    before = {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}
    flip = lambda c: "A" if c != "A" else "B"  # noqa: E731
    tampered = [url[:-5] + flip(url[-5]) + url[-4:],   # the signature (its last letter's low bits pad)
                url.replace(token, token.replace(token[2], "x" if token[2] != "x" else "y", 1)),
                f"{public_api.url}/unsubscribe/nonsense"]
    for wrong in tampered:
        for answer in (public_api.client().post(wrong, **ONE_CLICK), public_api.client().get(wrong)):
            assert answer.status_code == 404 and "not one herald made" in answer.text
    session.rollback()
    assert {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables} == before


def test_a_tenant_wide_address_is_opted_out_of_that_schedule_only(
    mail_sink: MailSink, public_api: Api, world: World, videos_file: str
) -> None:
    with session_scope() as session:
        tenant = add_tenant(session, "gamma", "Gamma", "UTC", videos_file,
                            emails=["team@gamma.example", "ops@gamma.example"])
        save_report(session, tenant, parse_definition(REPORT))
        ids = [add_schedule(session, tenant, "video-performance", now=utcnow(), cron_expr="0 9 * * *",
                            formats=["csv"], channels=["email"]).id for _ in range(2)]
    client = public_api.client(token_for("gamma", "schedules.write"))
    client.post(f"/api/v1/schedules/{ids[0]}/send")
    team = next(m for m in mail_sink.to("team@gamma.example"))
    assert public_api.client().post(unsubscribe_url(team), **ONE_CLICK).status_code == 200

    mail_sink.mails.clear()
    for schedule in ids:
        client.post(f"/api/v1/schedules/{schedule}/send")
    sent = sorted((m.rcpt_tos[0], m.message["Subject"]) for m in mail_sink.mails)
    assert [to for to, _ in sent] == ["ops@gamma.example", "ops@gamma.example", "team@gamma.example"]


def test_a_test_send_and_a_herald_without_public_url_carry_no_unsubscribe_link(
    mail_sink: MailSink, public_api: Api, api: Api, world: World
) -> None:
    tested = public_api.client(world.token("schedules.write")).post(
        f"/api/v1/schedules/{world.schedule}/test", json={"email": ["qa@acme.example"]})
    assert tested.status_code == 202
    api.client(world.token("schedules.write")).post(f"/api/v1/schedules/{world.schedule}/send")
    assert len(mail_sink.mails) == 2
    for mail in mail_sink.mails:
        assert mail.message["List-Unsubscribe"] is None and mail.message["List-Unsubscribe-Post"] is None
        assert "Reply to the sender to change or stop it." in mail.text()
