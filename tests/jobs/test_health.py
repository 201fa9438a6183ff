"""`check_health` and `herald health`: the tick's heartbeat, due and stuck work, delivery
failures, queue depths and the render browsers. Runs on SQLite and PostgreSQL; Redis where
it is asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dramatiq import Message

from jobs.tick import tick
from models.db import session_scope
from models.health import RenderBrowserBeacon, TickHeartbeat, host_name
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule, ScheduleRecipient
from models.settings import get_settings
from services.health import check_health, read_broker_info, read_render_browsers_or_none
from tests.conftest import REDIS_TEST_URL
from tests.jobs.helpers import add_schedules, make_tenant

NOW = datetime(2026, 3, 2, 12, 0, 20, tzinfo=UTC)


def no_dispatch(runs) -> None:
    """The tick's runs go nowhere: these tests only read what it wrote."""


def add_run(url: str, schedule_id: int, tenant_id: int, status: RunStatus, *, slot: datetime,
            queued_at: datetime | None = None, lease_expires_at: datetime | None = None) -> int:
    with session_scope(url) as session:
        run = ReportRun(schedule_id=schedule_id, tenant_id=tenant_id, scheduled_for=slot, status=status,
                        queued_at=queued_at, lease_expires_at=lease_expires_at)
        session.add(run)
        session.flush()
        return run.id


def test_a_tick_writes_one_heartbeat_row_per_host(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 3, cron="0 12 * * *", next_run_at=NOW - timedelta(seconds=20))
    tick(NOW, no_dispatch)
    tick(NOW + timedelta(minutes=1), no_dispatch)
    with session_scope(db_url) as session:
        [beat] = session.exec(sa.select(TickHeartbeat)).scalars().all()
    assert beat.host == host_name()
    assert beat.last_started_at == NOW + timedelta(minutes=1)
    assert beat.last_finished_at >= beat.last_started_at and beat.duration_ms >= 0
    assert beat.claimed == 0  # the second tick found nothing due; the first claimed 3


def test_a_fresh_install_is_healthy_until_schedules_exist(db_url: str) -> None:
    with session_scope(db_url) as session:
        assert check_health(session, NOW).problems == []
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW + timedelta(hours=1))
    with session_scope(db_url) as session:
        [problem] = check_health(session, NOW).problems
    assert problem.startswith("No tick has run yet although 1 schedules exist")


def test_health_reports_an_old_tick_and_stuck_runs_and_exits_1(db_url: str, cli) -> None:
    tenant, report = make_tenant(db_url)
    [sid] = add_schedules(db_url, tenant, report, 1, cron="0 12 * * *",
                          next_run_at=NOW + timedelta(hours=1))
    tick(NOW - timedelta(minutes=14), no_dispatch)
    queued = add_run(db_url, sid, tenant, RunStatus.QUEUED, slot=NOW - timedelta(days=1),
                     queued_at=NOW - timedelta(minutes=10))
    running = add_run(db_url, sid, tenant, RunStatus.RUNNING, slot=NOW - timedelta(days=2),
                      lease_expires_at=NOW - timedelta(seconds=30))
    add_run(db_url, sid, tenant, RunStatus.RUNNING, slot=NOW - timedelta(days=3),
            lease_expires_at=NOW + timedelta(seconds=30))  # a live lease: not stuck
    result = cli("health", "--json", "--now", NOW.isoformat())
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["healthy"] is False and data["stuck_runs"] == [queued, running]
    assert data["last_tick_ago_seconds"] == pytest.approx(14 * 60, abs=5)
    assert any(p.startswith("The last tick was 14 min ago") for p in data["problems"])
    assert any(p.startswith("2 runs are stuck") for p in data["problems"])
    assert data["broker"] is None  # no REDIS_URL: embedded


def test_a_recent_tick_with_nothing_stuck_is_healthy_and_exits_0(db_url: str, cli) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 2, cron="0 12 * * *", next_run_at=NOW - timedelta(seconds=20))
    tick(NOW, no_dispatch)  # claims both; their runs are queued just now
    result = cli("health", "--now", (NOW + timedelta(seconds=30)).isoformat())
    assert result.exit_code == 0, result.output
    assert "healthy" in result.stdout.splitlines()


def test_due_but_not_claimed_schedules_are_counted(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    add_schedules(db_url, tenant, report, 3, cron="0 12 * * *", next_run_at=NOW - timedelta(minutes=5))
    add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW - timedelta(minutes=1))
    add_schedules(db_url, tenant, report, 2, cron="0 12 * * *", next_run_at=NOW - timedelta(hours=1),
                  active=False)
    with session_scope(db_url) as session:
        health = check_health(session, NOW)
    assert health.due_not_claimed == 3
    assert any(p.startswith("3 schedules are due") for p in health.problems)


def test_failure_rate_per_channel_matches_the_deliveries(db_url: str) -> None:
    tenant, report = make_tenant(db_url)
    [sid] = add_schedules(db_url, tenant, report, 1, cron="0 12 * * *", next_run_at=NOW + timedelta(hours=1))
    run = add_run(db_url, sid, tenant, RunStatus.PARTIAL, slot=NOW - timedelta(hours=1))
    old = add_run(db_url, sid, tenant, RunStatus.FAILED, slot=NOW - timedelta(days=3))
    rows = ([("email", DeliveryStatus.SENT)] * 3 + [("email", DeliveryStatus.FAILED)]
            + [("telegram", DeliveryStatus.SENT)] * 2 + [("telegram", DeliveryStatus.PENDING)])
    with session_scope(db_url) as session:
        for i, (channel, status) in enumerate(rows):
            session.add(Delivery(run_id=run, channel=channel, recipient=f"r{i}", status=status,
                                 created_at=NOW - timedelta(hours=2)))
        # Two days old: outside the 24 h window.
        session.add(Delivery(run_id=old, channel="telegram", recipient="x", status=DeliveryStatus.FAILED,
                             created_at=NOW - timedelta(days=2)))
    with session_scope(db_url) as session:
        failures = {f.channel: f for f in check_health(session, NOW).failures}
    assert (failures["email"].sent, failures["email"].failed, failures["email"].failure_rate) == (3, 1, 0.25)
    assert (failures["telegram"].sent, failures["telegram"].failed, failures["telegram"].pending,
            failures["telegram"].failure_rate) == (2, 0, 1, 0.0)


def test_queue_depths_show_the_enqueued_messages(redis_broker, db_url: str, cli) -> None:
    for run_id in range(3):
        redis_broker.enqueue(Message(queue_name="query.default", actor_name="query_stage",
                                     args=(run_id,), kwargs={}, options={}))
    redis_broker.enqueue(Message(queue_name="render", actor_name="render_stage",
                                 args=(9,), kwargs={}, options={}), delay=60_000)
    info = read_broker_info(get_settings(), datetime.now(UTC))
    assert info.error is None
    assert (info.queues["query.default"].ready, info.queues["render"].delayed) == (3, 1)
    assert info.queues["deliver"].ready == 0
    assert info.processes_seen >= 1  # this process enqueued, so its broker wrote a heartbeat
    result = cli("health", "--json")
    assert result.exit_code == 0, result.output  # no schedules, a fresh heartbeat: healthy
    data = json.loads(result.stdout)
    assert data["broker"]["queues"]["query.default"] == {"ready": 3, "delayed": 0, "dead": 0}


def test_an_unreachable_redis_makes_queues_unknown(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    info = read_broker_info(get_settings(), NOW)
    assert info.queues == {} and info.processes_seen is None
    with session_scope(db_url) as session:
        [problem] = check_health(session, NOW, info).problems
    assert problem.startswith("Queue depths and workers are unknown")


def test_render_browsers_come_from_redis_and_a_failed_launch_is_a_problem(
        redis_namespace: str, db_url: str, cli) -> None:
    # Given a render process whose Chromium launched (this one) and one whose launch failed
    # (another process, so another key), both publishing to Redis as the printer does.
    RenderBrowserBeacon(REDIS_TEST_URL, redis_namespace).launched("131.0.6778.33")
    failing = ("from models.health import RenderBrowserBeacon as B; import sys; "
               "B(sys.argv[1], sys.argv[2]).failed('No Chromium found; run `playwright install "
               "chromium`, install the system package (apt-get install chromium), or set "
               "HERALD_CHROMIUM_PATH.'); print(__import__('os').getpid())")
    other = int(subprocess.run([sys.executable, "-c", failing, REDIS_TEST_URL, redis_namespace],
                               check=True, capture_output=True, text=True).stdout)
    # When health is read
    browsers = read_render_browsers_or_none(get_settings())
    with session_scope(db_url) as session:
        report = check_health(session, NOW, None, get_settings(), browsers)
    # Then both processes show, and the failed launch is one problem sentence
    by_pid = {b.pid: b for b in report.render_browsers}
    assert (by_pid[os.getpid()].ok, by_pid[os.getpid()].version) == (True, "131.0.6778.33")
    assert (by_pid[other].ok, by_pid[other].version) == (False, None)
    [problem] = report.problems
    assert problem.startswith(f"The render browser of process {other} on {host_name()} did not start at ")
    assert problem.endswith("UTC: No Chromium found; run `playwright install chromium`, install the "
                            "system package (apt-get install chromium), or set HERALD_CHROMIUM_PATH.")
    result = cli("health", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert sorted(b["pid"] for b in data["render_browsers"]) == sorted([os.getpid(), other])


def test_render_browsers_are_unknown_without_redis(db_url: str) -> None:
    assert read_render_browsers_or_none(get_settings()) is None
    with session_scope(db_url) as session:
        assert check_health(session, NOW).render_browsers is None


def test_the_thresholds_are_settings(db_url: str, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    tenant, report = make_tenant(db_url)
    [sid] = add_schedules(db_url, tenant, report, 1, cron="0 12 * * *",
                          next_run_at=NOW + timedelta(hours=1))
    tick(NOW - timedelta(minutes=14), no_dispatch)
    run = add_run(db_url, sid, tenant, RunStatus.PARTIAL, slot=NOW - timedelta(hours=1))
    with session_scope(db_url) as session:
        for i, status in enumerate((DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.FAILED)):
            session.add(Delivery(run_id=run, channel="email", recipient=f"r{i}@x.example",
                                 status=status, created_at=NOW - timedelta(hours=1)))
    assert cli("health", "--now", NOW.isoformat()).exit_code == 1  # a tick 14 min ago is a problem
    monkeypatch.setenv("HERALD_HEALTH_TICK_LATE_SECONDS", "1200")
    monkeypatch.setenv("HERALD_HEALTH_FAILURE_RATE", "0.5")
    result = cli("health", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output


def test_a_channel_not_configured_is_named_on_its_schedules_not_a_problem(
        db_url: str, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schedules that send to Telegram without TELEGRAM_BOT_TOKEN need an operator's look; herald
    itself is live, so a container healthcheck (`--live`) passes and `herald_healthy` is 1."""
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("MAIL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MAIL_FROM", "herald@acme.example")
    get_settings.cache_clear()
    tenant, report = make_tenant(db_url)
    on_telegram, by_mail, paused, nobody = add_schedules(
        db_url, tenant, report, 4, cron="0 12 * * *", next_run_at=NOW + timedelta(hours=1))
    with session_scope(db_url) as session:
        session.add_all([ScheduleRecipient(schedule_id=on_telegram, channel="telegram", address="-100123"),
                         ScheduleRecipient(schedule_id=by_mail, channel="email", address="a@acme.example"),
                         ScheduleRecipient(schedule_id=paused, channel="telegram", address="-100456")])
        session.execute(sa.update(Schedule).where(Schedule.id == paused).values(
            active=False, paused_reason="TELEGRAM_BOT_TOKEN is not set"))
        session.execute(sa.update(Schedule).where(Schedule.id == by_mail).values(channels=["email"]))
    tick(NOW, no_dispatch)

    with session_scope(db_url) as session:
        report_now = check_health(session, NOW)
    assert report_now.problems == []
    assert report_now.attention == [
        f"2 schedules send on Telegram ({on_telegram}, {paused}), which cannot send: "
        f"TELEGRAM_BOT_TOKEN is not set; set it to send to Telegram chats."]
    result = cli("health", "--now", NOW.isoformat())
    assert result.exit_code == 2, result.output
    assert result.stdout.splitlines()[-1].startswith("attention: 2 schedules send on Telegram")
    assert cli("health", "--now", NOW.isoformat(), "--live").exit_code == 0

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    get_settings.cache_clear()
    assert cli("health", "--now", NOW.isoformat()).exit_code == 0
