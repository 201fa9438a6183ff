"""Schedules over REST, with the CLI's names: created, read, changed, paused, resumed, deleted;
bad input is 422 naming the field with nothing written; a schedule made over HTTP fires on the
tick and reaches the mail server; send now and test send go through the one implementation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, SQLModel

from jobs.tick import tick
from models.db import utcnow
from models.schedules import Schedule
from tests.api.conftest import Api, World
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process
from tests.seeding import count_rows

NEW = {"report": "video-performance", "cron": "30 9 * * 1-5", "timezone": "America/New_York",
       "email": ["boss@acme.example", "Ops@Acme.example"], "telegram": ["-1001234567890"],
       "formats": ["pdf", "csv"], "subject": "{title} for {date}"}


def test_a_schedule_round_trips(api: Api, world: World, session: Session) -> None:
    client = api.client(world.token("schedules.read", "schedules.write"))
    made = client.post("/api/v1/schedules", json=NEW)
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert made.headers["location"] == f"/api/v1/schedules/{schedule['id']}"
    assert (schedule["cron"], schedule["timezone"], schedule["description"]) == (
        "30 9 * * 1-5", "America/New_York", "At 09:30, Monday through Friday")
    assert schedule["recipients"] == [{"channel": "email", "address": "boss@acme.example"},
                                      {"channel": "email", "address": "Ops@acme.example"},
                                      {"channel": "telegram", "address": "-1001234567890"}]
    assert client.get(f"/api/v1/schedules/{schedule['id']}").json() == schedule
    assert schedule["id"] in [s["id"] for s in client.get("/api/v1/schedules").json()]

    changed = client.patch(f"/api/v1/schedules/{schedule['id']}",
                           json={"cadence": "weekly", "at": "08:00", "email": ["boss@acme.example"]})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["cron"], changed.json()["cadence"], changed.json()["formats"]) == (
        "0 8 * * 1", "weekly", ["pdf", "csv"])   # what the change left out stays
    assert [r["address"] for r in changed.json()["recipients"]] == ["boss@acme.example", "-1001234567890"]

    assert client.post(f"/api/v1/schedules/{schedule['id']}/pause").json()["active"] is False
    assert client.post(f"/api/v1/schedules/{schedule['id']}/resume").json()["active"] is True
    assert client.delete(f"/api/v1/schedules/{schedule['id']}").status_code == 204
    assert client.get(f"/api/v1/schedules/{schedule['id']}").status_code == 404
    session.rollback()
    assert session.get(Schedule, schedule["id"]).deleted_at is not None  # the row stays, deleted


@pytest.mark.parametrize("body, detail", [
    ({**NEW, "cron": "0 9 * *"}, "Invalid cron expression '0 9 * *'; use five fields"),
    ({**NEW, "timezone": "Mars/Olympus"}, "Unknown timezone 'Mars/Olympus'; use an IANA name"),
    ({**NEW, "email": [f"r{i}@acme.example" for i in range(21)], "telegram": []},
     "21 recipients given; a schedule may have at most 20"),
    ({**NEW, "report": "nope"}, "The report 'nope' is not one of this tenant's reports"),
    ({**NEW, "email": "boss@acme.example"}, "email: input should be a valid list"),
    ({**NEW, "colour": "red"}, "colour is not a field herald knows; leave it out."),
    ({**NEW, "cadence": "daily"}, "Both cron and cadence are given"),
])
def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    api: Api, world: World, session: Session, body: dict, detail: str
) -> None:
    client = api.client(world.token("schedules.write"))
    session.rollback()
    before = {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}
    response = client.post("/api/v1/schedules", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith(detail), response.json()
    session.rollback()
    assert {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables} == before


def test_a_schedule_made_over_http_fires_on_the_tick_and_is_delivered(
    mail_sink: MailSink, api: Api, world: World
) -> None:
    client = api.client(world.token("schedules.write"))
    made = client.post("/api/v1/schedules", json={"report": "video-performance", "cron": "* * * * *",
                                                  "email": ["reader@acme.example"], "formats": ["csv"]})
    assert made.status_code == 201, made.text
    report = tick(utcnow() + timedelta(minutes=1), in_process)
    assert len(report.queued) == 1
    [mail] = mail_sink.to("reader@acme.example")
    [name] = mail.attachments()
    assert name.startswith("video-performance-") and name.endswith(".csv")


def test_send_now_and_a_test_answer_202_with_the_run(mail_sink: MailSink, api: Api,
                                                     world: World) -> None:
    client = api.client(world.token("schedules.read", "schedules.write"))
    sent = client.post(f"/api/v1/schedules/{world.schedule}/send")
    assert sent.status_code == 202, sent.text
    run = sent.json()
    assert (run["status"], run["test"]) == ("success", False)   # embedded: run in the API process
    assert sent.headers["location"] == f"/api/v1/runs/{run['run_id']}"
    story = client.get(f"/api/v1/runs/{run['run_id']}").json()
    assert [(d["recipient"], d["status"]) for d in story["deliveries"]] == [("boss@acme.example", "sent")]
    assert story["requested_by"].startswith("token herald_")

    tested = client.post(f"/api/v1/schedules/{world.schedule}/test", json={"email": ["qa@acme.example"]})
    assert tested.status_code == 202 and tested.json()["test"] is True
    assert [m.rcpt_tos for m in mail_sink.mails] == [["boss@acme.example"], ["qa@acme.example"]]
    empty = client.post(f"/api/v1/schedules/{world.schedule}/test", json={})
    assert empty.status_code == 422 and empty.json()["detail"].startswith("The test recipients are empty")
