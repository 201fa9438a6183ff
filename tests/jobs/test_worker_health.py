"""Real `dramatiq jobs` workers tell the truth: a broker that does not answer fails their health
check and costs a sentence per backoff, not a line per queue every 3 s; each worker on a host
serves /metrics and /health on its own port (127.0.0.1 unless told otherwise), and says in one
line when its port is taken; a worker stopped during an SMTP outage exits in seconds, and the
mail goes later, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from jobs.health import HealthCheck
from models import migrate
from models.db import session_scope, utcnow
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import load_settings
from pipeline.lifecycle import create_manual_run
from tests.delivery.conftest import SENDER, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink, free_port
from tests.jobs.test_metrics import wait_for_scrape
from tests.jobs.test_worker_recovery import kill_group, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
READERS = ["anna@acme.example", "boris@acme.example", "chen@acme.example"]


def worker_env(database_url: str, broker_url: str, metrics_port: int, tmp_path: Path, **more: str) -> dict[str, str]:
    """The environment of a worker on this host: its own metrics port and metrics directory."""
    inherited = {k: v for k, v in os.environ.items()
                 if k.lower() not in ("prometheus_multiproc_dir", "dramatiq_prom_host", "dramatiq_prom_port",
                                      "herald_metrics_host", "herald_metrics_port")}
    return {**inherited, "DATABASE_URL": database_url, "REDIS_URL": broker_url,
            "HERALD_METRICS_PORT": str(metrics_port),
            "dramatiq_prom_db": str(tmp_path / f"prometheus-{metrics_port}"), **more}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(["dramatiq", "jobs", "--processes", "1", "--threads", "2"], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def health_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The container's health check command, as compose runs it."""
    return subprocess.run([sys.executable, "-m", "jobs.health"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_worker_whose_broker_does_not_answer_fails_its_health_check_and_says_so_once_per_backoff(
    create_pg_database, tmp_path: Path
) -> None:
    # Given a worker whose REDIS_URL names a port nothing listens on
    broker_port = free_port()
    env = worker_env(create_pg_database(), f"redis://127.0.0.1:{broker_port}/0", free_port(), tmp_path)
    log = tmp_path / "worker.log"
    worker, redis_server = start_worker(env, log), None
    try:
        # Then its health check fails with the sentence saying which service does not answer
        failed = wait_for(lambda: (c := health_check(env)).returncode == 1 and "Redis" in c.stderr and c,
                          timeout=60)
        assert failed.stderr == (f"Redis at REDIS_URL (127.0.0.1:{broker_port}) does not answer "
                                 f"(Connection refused).\n")
        wait_for(lambda: "herald.worker" in log.read_text(), timeout=30)
        first_said = time.monotonic()  # (a loaded machine may take seconds to boot a worker)

        # When Redis comes up on that port 8 s after the worker first said it does not answer
        time.sleep(max(0.0, first_said + 8 - time.monotonic()))
        redis_server = subprocess.Popen(["redis-server", "--port", str(broker_port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)

        # Then the health check passes again, and 25 s in the log holds a handful of lines
        passed = wait_for(lambda: (c := health_check(env)).returncode == 0 and c, timeout=30)
        time.sleep(max(0.0, first_said + 25 - time.monotonic()))
        lines = log.read_text().splitlines()
    finally:
        kill_group(worker, signal.SIGTERM)
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)

    assert passed.stdout.startswith(f"ok: Redis at REDIS_URL (127.0.0.1:{broker_port}) and the database")
    print(f"{len(lines)} lines:", *lines, sep="\n")
    told = [line.split("herald.worker: ", 1)[1] for line in lines if "herald.worker: " in line]
    down = f"Redis at REDIS_URL (127.0.0.1:{broker_port}) does not answer (Connection refused)"
    assert told[:2] == [f"{down}; retrying in 5 s.", f"{down}; retrying in 10 s."]
    assert told[-1].startswith(f"Redis at REDIS_URL (127.0.0.1:{broker_port}) answers again, after ")
    # dramatiq's three start lines, the outage's few; no line per queue, no traceback
    assert len(lines) <= 6
    assert not [line for line in lines if "CRITICAL" in line or "Traceback" in line]


def test_two_workers_on_one_host_serve_metrics_and_health_on_their_own_ports(
    create_pg_database, redis_namespace: str, tmp_path: Path
) -> None:
    # Given two workers on this host, each told its own metrics port
    database_url = create_pg_database()
    ports = [free_port(), free_port()]
    envs = [worker_env(database_url, os.environ["REDIS_URL"], port, tmp_path) for port in ports]
    workers = [start_worker(env, tmp_path / f"worker-{i}.log") for i, env in enumerate(envs)]
    third_log = tmp_path / "third.log"
    third = None
    try:
        # Then each serves /metrics and /health on its own port, on 127.0.0.1 only
        for port in ports:
            wait_for_scrape(f"http://127.0.0.1:{port}/metrics", lambda samples: True)
            status, text = get(f"http://127.0.0.1:{port}/health")
            assert (status, text) == (200, "ok: Redis at REDIS_URL (127.0.0.1:6379) and the database "
                                           "at DATABASE_URL answer.\n")
            with pytest.raises(urllib.error.URLError, match="Connection refused"):  # 127.0.0.1 only
                urllib.request.urlopen(f"http://127.0.0.2:{port}/health", timeout=5)
        assert all(health_check(env).returncode == 0 for env in envs)

        # When a third worker is started with the first one's port
        third = start_worker(envs[0], third_log)
        wait_for(lambda: "is in use" in third_log.read_text(), timeout=60)
        time.sleep(1)
        assert third.poll() is None  # it works on, without metrics
    finally:
        for worker in [*workers, *([third] if third else [])]:
            kill_group(worker, signal.SIGTERM)

    # Then it says why in one line, and no traceback
    text = third_log.read_text()
    said = [line for line in text.splitlines() if f"port {ports[0]}" in line]
    assert len(said) == 1
    assert said[0].endswith(f"metrics port {ports[0]} is in use (another worker?); set HERALD_METRICS_PORT "
                            f"to a free port for each worker on this host. Until it is free, this "
                            f"worker serves no /metrics or /health.")
    assert "Traceback" not in text and "OSError" not in text


def test_health_names_a_database_that_does_not_answer(redis_namespace: str) -> None:
    settings = load_settings(database_url="postgresql://herald@127.0.0.1:1/gone")
    status, text = HealthCheck(settings).answer()
    assert status == 503
    assert text.startswith("The database at DATABASE_URL does not answer (connection failed: ")
    assert "Connection refused" in text and "Redis" not in text  # Redis answers


def enqueue_manual_run(url: str, schedule_id: int) -> int:
    """A manual run of the schedule, its query stage sent to the Redis broker (as send-now does)."""
    from jobs.dispatch import enqueue_runs

    with session_scope(url) as session:
        run = create_manual_run(session, session.get(Schedule, schedule_id), utcnow(), "test")
        run_id, tenant_id = run.id, run.tenant_id
    enqueue_runs([(run_id, tenant_id)])
    return run_id


def deliveries(url: str, run_id: int) -> list[Delivery]:
    with session_scope(url) as session:
        return list(session.exec(select(Delivery).where(Delivery.run_id == run_id)).all())


def test_a_worker_stopped_in_an_smtp_outage_exits_within_10_s_and_the_mail_goes_later_once(
    create_pg_database, redis_broker, videos_file: str, tmp_path: Path  # noqa: F811
) -> None:
    # Given a schedule for three readers, and an SMTP server that refuses connections
    url = create_pg_database()
    migrate.upgrade(url)
    sink = MailSink()  # its port, not listening yet
    schedule_id = make_schedule(videos_file, emails=READERS, formats=["csv"], url=url)
    env = worker_env(url, os.environ["REDIS_URL"], free_port(), tmp_path,
                     HERALD_REDIS_NAMESPACE=os.environ["HERALD_REDIS_NAMESPACE"],
                     MAIL_SMTP_HOST="127.0.0.1", MAIL_SMTP_PORT=str(sink.port), MAIL_FROM=SENDER)
    worker_a = start_worker(env, tmp_path / "a.log")
    worker_b = None
    try:
        # When worker A has tried to send the run and failed
        run_id = enqueue_manual_run(url, schedule_id)
        wait_for(lambda: any(d.attempts and d.error for d in deliveries(url, run_id)), timeout=60)

        # and is stopped (SIGTERM) while the outage lasts, as a supervisor stops it: the signal
        # to dramatiq's main process, which passes it on once (a second SIGTERM reaching a
        # worker process, as a signal to the whole group may, is dramatiq's "kill now")
        stopping = time.monotonic()
        os.kill(worker_a.pid, signal.SIGTERM)
        worker_a.wait(timeout=60)
        stopped_after = time.monotonic() - stopping
        held = deliveries(url, run_id)

        # When the SMTP server is back and worker B runs
        sink.start()
        worker_b = start_worker(env, tmp_path / "b.log")
        wait_for(lambda: (r := run_row(url, run_id)) and r.status != RunStatus.RUNNING, timeout=90)
    finally:
        kill_group(worker_a, signal.SIGKILL)
        if worker_b is not None:
            kill_group(worker_b, signal.SIGTERM)
        sink.stop()

    # Then A stopped within 10 s with nothing sent and nothing given up
    print(f"worker A stopped {stopped_after:.1f} s after SIGTERM")
    assert stopped_after < 10
    assert {d.status for d in held} == {DeliveryStatus.PENDING}
    assert "refused the connection" in held[0].error
    # And B sent each reader exactly one message
    assert sorted(a for mail in sink.mails for a in mail.rcpt_tos) == sorted(READERS)
    assert run_row(url, run_id).status == RunStatus.SUCCESS
    sent = deliveries(url, run_id)
    assert {d.status for d in sent} == {DeliveryStatus.SENT} and min(d.attempts for d in sent) >= 2


def run_row(url: str, run_id: int) -> ReportRun:
    with session_scope(url) as session:
        return session.execute(sa.select(ReportRun).where(ReportRun.id == run_id)).scalars().one()
