"""Prometheus metrics, scraped over real HTTP: the `herald metrics` exporter counts each run and
delivery outcome once (a redelivered message adds nothing), reads its gauges from the database,
and a real `dramatiq jobs` worker serves herald's counters beside dramatiq's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from herald.cli.metrics import start_exporter
from jobs.tick import tick
from models import migrate
from models.db import session_scope, utcnow
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from pipeline.deliver import deliver_run, end_from_deliveries
from pipeline.in_process import run_in_process
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import add_schedules, in_process, make_tenant, runs_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample on the page, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def exporter(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`herald metrics` in embedded mode (no REDIS_URL), on a free port in this process."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    server, thread = start_exporter("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    thread.join()


@pytest.fixture
def stub_pdf(monkeypatch: pytest.MonkeyPatch, mail_sink: MailSink) -> None:  # noqa: F811
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


def test_outcomes_are_counted_once_and_the_gauges_come_from_the_database(
    db_url: str, videos_file: str, mail_sink: MailSink, stub_pdf: None, exporter: str  # noqa: F811
) -> None:
    # Given two schedules due now: one to two good addresses, one also to an address the
    # mail server refuses for good
    mail_sink.refuse["gone@beta.example"] = (550, "5.1.1 <gone@beta.example>: mailbox unavailable")
    good = make_schedule(videos_file, emails=["anna@acme.example", "boris@acme.example"])
    partial = make_schedule(videos_file, emails=["cleo@beta.example", "gone@beta.example"], slug="beta")
    now = utcnow()
    with session_scope() as session:
        session.execute(sa.update(Schedule).values(next_run_at=now - timedelta(minutes=1)))
    before = scrape(exporter)

    # When the tick runs them through the whole pipeline in this process (the embedded mode),
    # and every stage's message is then delivered a second time
    tick(now, in_process)
    runs = {r.schedule_id: r for r in runs_of(db_url)}
    for run in runs.values():
        run_in_process(run.id)
        deliver_run(run.id)
        end_from_deliveries(run.id)
    after = scrape(exporter)

    # Then each run and each delivery was counted once, by its final state
    assert (runs[good].status, runs[partial].status) == (RunStatus.SUCCESS, RunStatus.PARTIAL)
    assert len(mail_sink.to("anna@acme.example")) == 1 and mail_sink.to("gone@beta.example") == []

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("herald_runs_total", status="success") == 1
    assert grew("herald_runs_total", status="partial") == 1
    assert grew("herald_runs_total", status="failed") == 0
    assert grew("herald_deliveries_total", channel="email", status="sent") == 3
    assert grew("herald_deliveries_total", channel="email", status="failed") == 1
    # ... and the stages were timed: one query and two renders per run, one send per recipient
    assert grew("herald_query_seconds_count") == 2
    assert grew("herald_render_seconds_count", format="pdf") == 2
    assert grew("herald_render_seconds_count", format="csv") == 2
    assert grew("herald_send_seconds_count", channel="email") == 4
    assert grew("herald_tick_seconds_count") == 1 and grew("herald_tick_lag_seconds_count") == 1
    assert grew("herald_artifact_bytes_total", kind="csv") > 0
    assert grew("herald_artifact_bytes_total", kind="pdf") > 0

    # And the database gauges: two schedules, nothing stuck, the tick seen a moment ago
    assert value(after, "herald_database_up") == 1
    assert value(after, "herald_schedules") == 2 and value(after, "herald_runs_stuck") == 0
    assert 0 <= value(after, "herald_last_tick_age_seconds") < 600
    assert value(after, "herald_deliveries_last_24h", channel="email", status="failed") == 1

    # When a run has sat queued for an hour without a worker picking it up
    with session_scope() as session:
        session.add(ReportRun(schedule_id=good, tenant_id=runs[good].tenant_id,
                              scheduled_for=now - timedelta(days=1), status=RunStatus.QUEUED,
                              queued_at=now - timedelta(hours=1)))

    # Then the next scrape shows it stuck, and herald unhealthy
    stuck = scrape(exporter)
    assert value(stuck, "herald_runs_stuck") == 1 and value(stuck, "herald_healthy") == 0


def test_an_unreadable_database_is_a_gauge_not_a_failed_scrape(db_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    server, thread = start_exporter("127.0.0.1", 0, url="postgresql+psycopg://herald@127.0.0.1:1/gone")
    try:
        samples = scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        thread.join()
    assert value(samples, "herald_database_up") == 0
    assert ("herald_schedules", ()) not in samples


def test_with_a_broker_the_exporter_adds_queue_depths_and_leaves_counters_to_the_workers(
    db_url: str, redis_namespace: str, redis_client
) -> None:
    # Given two query messages waiting in Redis (dramatiq's layout: a list per queue)
    redis_client.rpush(f"{redis_namespace}:query.default", "m1", "m2")
    server, thread = start_exporter("127.0.0.1", 0)
    try:
        samples = scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        thread.join()
    assert value(samples, "herald_broker_up") == 1
    assert value(samples, "herald_queue_messages", queue="query.default", state="ready") == 2
    assert ("herald_queue_messages", (("queue", "deliver"), ("state", "dead"))) in samples
    # herald's counters are the workers' to serve (port 9191), not this process's
    names = {name for name, _ in samples}
    assert not names & {"herald_runs_total", "herald_deliveries_total", "herald_tick_seconds_count"}


def test_the_metrics_command_says_when_its_port_is_taken(cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("metrics", "--host", "127.0.0.1", "--port", port)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: Cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert result.stderr.endswith("; free the port or choose another with --port.\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_worker_serves_herald_counters_beside_dramatiqs(create_pg_database, redis_namespace: str,
                                                          tmp_path) -> None:
    # Given a due schedule whose tenant has no data source (its run fails in the query stage)
    url = create_pg_database()
    migrate.upgrade(url)
    tenant, report = make_tenant(url)
    add_schedules(url, tenant, report, 1, cron="0 9 * * *", next_run_at=utcnow() - timedelta(minutes=1))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"},
           "DATABASE_URL": url, "REDIS_URL": os.environ["REDIS_URL"],
           "HERALD_REDIS_NAMESPACE": redis_namespace, "dramatiq_prom_db": str(tmp_path / "prom"),
           "dramatiq_prom_host": "127.0.0.1", "dramatiq_prom_port": str(port)}
    worker = subprocess.Popen(["dramatiq", "jobs", "--processes", "2", "--threads", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # When the tick enqueues its run and a worker process takes it
        subprocess.run(["herald", "tick"], env=env, check=True, capture_output=True, timeout=60)
        samples = wait_for_scrape(f"http://127.0.0.1:{port}/metrics",
                                  lambda s: value(s, "herald_runs_total", status="failed") >= 1)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)

    # Then dramatiq's exposition carries herald's counter (once) beside its own
    [run] = runs_of(url)
    assert run.status == RunStatus.FAILED
    assert value(samples, "herald_runs_total", status="failed") == 1
    assert value(samples, "dramatiq_messages_total", queue_name="query.default",
                 actor_name="query_stage") == 1


def wait_for_scrape(url: str, ready, timeout: float = 90.0) -> Samples:
    """Scrape until `ready(samples)`; the exposition process starts after the workers boot."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(url)
            if ready(samples):
                return samples
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not show the expected samples within {timeout} s")
        time.sleep(0.5)
