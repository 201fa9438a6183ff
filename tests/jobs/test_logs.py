"""Logs that say what happened: one line per state change of a run or a delivery, with its ids,
as text or JSON (HERALD_LOG_FORMAT), and never a secret in either format."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from jobs.tick import tick
from models.db import session_scope, utcnow
from models.logs import configure_logging
from models.runs import Delivery
from models.schedules import Schedule
from models.settings import get_settings, load_settings
from pipeline.in_process import run_in_process
from pipeline.leases import take_run
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process, make_tenant, runs_of

SMTP_PASSWORD = "s3cret-smtp-pass-for-logs"


@pytest.fixture
def stub_pdf(monkeypatch: pytest.MonkeyPatch, mail_sink: MailSink) -> None:  # noqa: F811
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging() changes the root logger and herald's level: put them back."""
    root, herald = logging.getLogger(), logging.getLogger("herald")
    handlers, level = list(root.handlers), herald.level
    yield
    root.handlers[:] = handlers
    herald.setLevel(level)


def state_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "herald.state"]


def test_each_state_change_is_one_line_with_its_ids(
    db_url: str, videos_file: str, mail_sink: MailSink, stub_pdf: None,  # noqa: F811
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="herald")
    # Given a schedule due now, to one good address and one the mail server refuses
    mail_sink.refuse["gone@acme.example"] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    schedule = make_schedule(videos_file, emails=["anna@acme.example", "gone@acme.example"])
    with session_scope() as session:
        session.execute(sa.update(Schedule).values(next_run_at=utcnow() - timedelta(minutes=1)))

    # When the tick runs it through the pipeline, and the run's messages come again
    tick(utcnow(), in_process)
    [run] = runs_of(db_url)
    run_in_process(run.id)

    # Then the run's moves and each delivery's are logged once each, in order, with their ids
    with session_scope() as session:
        delivery = {d.recipient: d.id for d in session.execute(sa.select(Delivery)).scalars()}
    where = f"tenant=acme schedule={schedule}"
    assert [r.getMessage() for r in state_lines(caplog)] == [
        f"run {run.id} {where} new→queued",
        f"run {run.id} {where} queued→running",
        f"delivery {delivery['anna@acme.example']} run={run.id} {where} email pending→sent",
        f"delivery {delivery['gone@acme.example']} run={run.id} {where} email pending→failed",
        f"run {run.id} {where} running→partial",
    ]
    # ... carrying the ids as fields (JSON keys), a failure at WARNING
    *_, failed, end = state_lines(caplog)
    assert (failed.run_id, failed.delivery_id, failed.tenant, failed.schedule_id, failed.channel,
            failed.from_status, failed.to_status) == (run.id, delivery["gone@acme.example"], "acme",
                                                      schedule, "email", "pending", "failed")
    assert failed.levelno == logging.WARNING and end.levelno == logging.WARNING
    assert not hasattr(end, "delivery_id")


def test_runs_made_and_recovered_by_the_tick_are_logged_per_row(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="herald")
    tenant, report = make_tenant(db_url, slug="globex")
    with session_scope() as session:
        session.execute(sa.insert(Schedule.__table__), [
            {"tenant_id": tenant, "report_id": report, "cron": "0 9 * * *", "timezone": "UTC",
             "formats": ["pdf"], "params": {}, "active": True, "misfire_grace_seconds": 3600,
             "next_run_at": utcnow() - timedelta(minutes=m), "created_at": utcnow()} for m in (1, 2)])
    dispatched: list[tuple[int, int]] = []

    # When the tick queues two runs; a worker takes the first and dies, nobody takes the second
    tick(utcnow(), dispatched.extend)
    first, second = runs_of(db_url)
    assert take_run(first.id, utcnow(), timedelta(seconds=5))
    # ... and a tick after the lease and the requeue delay re-enqueues both
    tick(utcnow() + timedelta(minutes=5), dispatched.extend)

    # Then each run made is one line, and so are the worker's take and the abandoned run's
    # move back to the queue; the second run, queued again, changed no state (the tick's
    # warning names it)
    lines = [r.getMessage() for r in state_lines(caplog)]
    assert lines == [f"run {first.id} tenant=globex schedule={first.schedule_id} new→queued",
                     f"run {second.id} tenant=globex schedule={second.schedule_id} new→queued",
                     f"run {first.id} tenant=globex schedule={first.schedule_id} queued→running",
                     f"run {first.id} tenant=globex schedule={first.schedule_id} running→queued"]
    assert len(dispatched) == 4
    # A run the tick queued is a DEBUG line (the tick's own INFO line counts them); a run taken
    # or put back in the queue is INFO
    assert [r.levelname for r in state_lines(caplog)] == ["DEBUG", "DEBUG", "INFO", "INFO"]
    assert any(r.name == "herald.tick" and r.levelno == logging.INFO and "queued 2," in r.getMessage()
               for r in caplog.records)


def test_json_lines_parse_with_the_ids_as_fields(db_url: str, restored_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings(log_format="json"), stream=out)
    tenant, report = make_tenant(db_url, slug="initech")
    with session_scope() as session:
        session.execute(sa.insert(Schedule.__table__).values(
            tenant_id=tenant, report_id=report, cron="0 9 * * *", timezone="UTC", formats=["pdf"],
            params={}, active=True, misfire_grace_seconds=3600,
            next_run_at=utcnow() - timedelta(minutes=1), created_at=utcnow()))

    tick(utcnow(), in_process)  # the tenant has no data source: the run fails

    [run] = runs_of(db_url)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    changes = [r for r in records if r.get("event") == "state_change"]
    # (the tick's queuing is a DEBUG line, below the default INFO)
    assert [(c["from_status"], c["to_status"]) for c in changes] == [
        ("queued", "running"), ("running", "failed")]
    assert all((c["run_id"], c["tenant"], c["schedule_id"]) == (run.id, "initech", run.schedule_id)
               for c in changes)
    assert changes[-1]["level"] == "WARNING" and changes[-1]["logger"] == "herald.state"
    assert changes[-1]["message"] == f"run {run.id} tenant=initech schedule={run.schedule_id} running→failed"
    assert datetime.fromisoformat(changes[-1]["time"]).utcoffset() == timedelta(0)
    assert changes[-1]["pid"] == os.getpid()
    assert "→" in out.getvalue()  # readable, not \u2192


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_secret_in_an_error_is_masked_in_both_formats(
    log_format: str, monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    monkeypatch.setenv("MAIL_SMTP_PASS", SMTP_PASSWORD)
    get_settings.cache_clear()
    out = io.StringIO()
    configure_logging(load_settings(log_format=log_format), stream=out)

    # herald's own message, a library's message, and a traceback, each holding the password
    logging.getLogger("herald.deliver").warning("login refused for %s", SMTP_PASSWORD)
    logging.getLogger("dramatiq.worker").error("connect postgresql://app:%s@db/x failed", "hunter22")
    try:
        raise ConnectionError(f"AUTH {SMTP_PASSWORD} rejected")
    except ConnectionError:
        logging.getLogger("herald.deliver").exception("send failed", extra={"run_id": 7})

    text = out.getvalue()
    assert SMTP_PASSWORD not in text and "hunter22" not in text
    lines = text.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert [r["message"] for r in records] == [
            "login refused for ***", "connect postgresql://app:***@db/x failed", "send failed"]
        assert "AUTH *** rejected" in records[-1]["exc_info"] and records[-1]["run_id"] == 7
    else:
        assert lines[0].endswith(f"WARNING [{os.getpid()}] herald.deliver: login refused for ***")
        assert lines[1].endswith("dramatiq.worker: connect postgresql://app:***@db/x failed")
        assert "ConnectionError: AUTH *** rejected" in text
