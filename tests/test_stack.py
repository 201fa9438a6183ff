"""docker-compose.yml's herald services, run here without containers: the same commands, with
the file's environment and the image's, against PostgreSQL, Redis and an SMTP server standing
in for mailpit. The demo's every-minute report reaches the inbox, and each service's health
check passes.

Only addresses change: `db`, `redis` and `mailpit` become the test's services, fixed ports
become free ones, and 0.0.0.0 becomes 127.0.0.1 (whole arguments and values are replaced;
inside the health checks' one-liners, only `:PORT/` in their URLs).
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from herald.demo import TEAM_EMAIL, demo_videos
from models.db import session_scope
from models.runs import FINAL_RUN_STATES, ReportRun, RunStatus
from models.schedules import Schedule
from tests.conftest import REDIS_TEST_URL
from tests.delivery.servers import MailSink, free_port
from tests.test_compose import (
    dockerfile_environment,
    healthcheck_command,
    herald_services,
    service_environment,
)

pytestmark = pytest.mark.slow
HEALTHY_WITHIN_S = 90  # as compose's start_period: retried until then


class Stack:
    """The compose file's herald services as local processes; every one is stopped at the end."""

    def __init__(self, tmp_path: Path, replace: dict[str, str], ports: dict[str, str],
                 environment: dict[str, str]) -> None:
        self.services = herald_services()
        self.tmp_path = tmp_path
        self.replace = replace
        self.ports = ports
        self.environment = environment
        self.processes: list[subprocess.Popen] = []

    def local(self, argv: list[str]) -> list[str]:
        """A command of the compose file with the test's addresses in place of the stack's."""
        out = []
        for arg in argv:
            arg = self.replace.get(arg, arg)
            for stack_port, local_port in self.ports.items():
                arg = arg.replace(f":{stack_port}/", f":{local_port}/")
            out.append(arg)
        return out

    def env(self, service: str) -> dict[str, str]:
        declared = service_environment(self.services[service])
        return {**os.environ, **dockerfile_environment(), **self.local_env(declared),
                **self.environment}

    def local_env(self, declared: dict[str, str]) -> dict[str, str]:
        return dict(zip(declared, self.local(list(declared.values())), strict=True))

    def run(self, service: str) -> str:
        """A one-shot service: its command must succeed; returns what it printed."""
        result = subprocess.run(self.local(self.services[service]["command"]), env=self.env(service),
                                cwd=self.tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (service, result.stderr)
        return result.stdout

    def start(self, service: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.tmp_path / f"{service}.log").open("wb")
        process = subprocess.Popen(self.local(self.services[service]["command"]),
                                   env={**self.env(service), **(extra_env or {})}, cwd=self.tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def log(self, service: str) -> str:
        return (self.tmp_path / f"{service}.log").read_text(errors="replace")

    def healthy(self, service: str) -> None:
        """The service's health check passes, retried as Docker would during its start period."""
        argv = self.local(healthcheck_command(self.services[service]))
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while True:
            result = subprocess.run(argv, env=self.env(service), cwd=self.tmp_path,
                                    capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} unhealthy: {result.stdout}{result.stderr}\n"
                                     f"{self.log(service) if service != 'tick' else ''}")
            time.sleep(1)

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def stack(tmp_path: Path, create_pg_database, create_tenant_database,
          redis_namespace: str) -> Iterator[tuple[Stack, MailSink, str]]:
    control, demo_data = create_pg_database(), create_tenant_database()
    sink = MailSink().start()
    ports = {stack_port: str(free_port()) for stack_port in ("8501", "9300", "9191")}
    replace = {  # compose value -> the test's
        "postgresql://herald:herald@db:5432/herald": control,
        "postgresql://herald:herald@db:5432/demo_data": demo_data.admin_url,
        "postgresql://demo_reader:demo_reader@db:5432/demo_data": demo_data.url,
        "redis://redis:6379/0": REDIS_TEST_URL,
        "mailpit": "127.0.0.1", "1025": str(sink.port), "0.0.0.0": "127.0.0.1", **ports,
    }
    environment = {"HERALD_REDIS_NAMESPACE": redis_namespace,
                   # dramatiq's Prometheus exposition (9191 in the stack) and its files
                   "dramatiq_prom_port": ports["9191"],
                   "dramatiq_prom_db": str(tmp_path / "dramatiq-prometheus")}
    with ExitStack() as cleanup:
        cleanup.callback(sink.stop)
        processes = Stack(tmp_path, replace, ports, environment)
        cleanup.callback(processes.stop)
        yield processes, sink, control


def demo_csv_rows() -> list[list[str]]:
    """The CSV's rows, from the demo's own data (`herald.demo.demo_videos`), as the report's
    query selects them; a cell a spreadsheet would run as a formula ("@creator1") arrives
    with a leading quote."""
    rows = [[str(value) for value in row] for row in demo_videos() if row[4] == "Campaign A"]
    return [["'" + v if v.startswith("@") else v for v in row] for row in rows]


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    (tmp_path / "report.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(tmp_path / "report.pdf"), "-"],
                          check=True, capture_output=True, text=True).stdout


def test_the_compose_stack_delivers_the_demo_report_and_each_service_is_healthy(
        stack, tmp_path: Path) -> None:
    processes, sink, control = stack
    # Given the one-shots: migrations, then the demo seeded once (a second start changes nothing)
    processes.run("migrate")
    seeded = processes.run("seed")
    assert re.search(r"log in to the admin as demo@example.com with password \S{12,}", seeded)
    assert processes.run("seed").strip() == "the demo tenant exists; nothing seeded"

    # When the worker, the tick, the admin and the exporter run; periodiq sends a tick at
    # start, which a worker runs; then the tick that serves the every-minute schedule's first
    # slot, as periodiq sends it at the start of that minute
    for service in ("worker", "tick", "admin", "exporter"):
        processes.start(service)
    with session_scope(control) as session:
        slot = session.execute(sa.select(Schedule.next_run_at).where(
            Schedule.cron == "* * * * *")).scalar_one()
    subprocess.run(["herald", "tick", "--now", slot.isoformat()], env=processes.env("tick"),
                   cwd=processes.tmp_path, check=True, capture_output=True, timeout=60)

    # Then that slot's run succeeds and its report reaches the inbox, with the demo's data
    run = _wait_for_run(control, slot, processes)
    assert run.status == RunStatus.SUCCESS, run.error
    [mail] = [m for m in sink.to(TEAM_EMAIL) if f"<herald.run-{run.id}." in m.message_id]
    files = {name.rsplit(".", 1)[1]: content for name, content in mail.attachments().items()}
    text = pdf_text(files["pdf"], tmp_path).replace("\u202f", " ")
    kpi = sum(row[8] for row in demo_videos() if row[4] == "Campaign A")
    assert "Video performance" in text and "Demo Media" in text and f"{kpi:,}" in text
    assert "RENDER_PDF_STUB" not in text  # printed by Chromium
    header, *rows = list(csv.reader(io.StringIO(files["csv"].decode("utf-8"), newline="")))
    assert header == ["title", "video_url", "platform", "status", "campaign_tag", "channel_username",
                      "published_at", "created_at", "views", "likes", "comments", "reposts"]
    assert sorted(rows) == sorted(demo_csv_rows())  # ties in published_at come in any order

    # And every long-running service passes its own health check
    for service in ("worker", "admin", "exporter", "tick"):
        processes.healthy(service)
    assert "tick_actor" in processes.log("tick")  # periodiq found the actor it sends


def _wait_for_run(url: str, slot, processes: Stack) -> ReportRun:
    deadline = time.monotonic() + 90
    while True:
        with session_scope(url) as session:
            run = session.execute(sa.select(ReportRun).where(
                ReportRun.scheduled_for == slot, ReportRun.status.in_(FINAL_RUN_STATES))).scalar()
        if run is not None:
            return run
        assert time.monotonic() < deadline, processes.log("worker")
        time.sleep(0.5)
