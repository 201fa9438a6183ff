"""An engineer's Python shell sends a run and the report arrives: on the embedded broker with
`jobs.shell.drain()`, and on Redis with a running `dramatiq jobs`.

Each shell is a fresh `python -` process reading its lines from stdin, as a person types
them: the first message sent builds the broker from the environment, once per process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models import migrate
from models.db import session_scope
from models.runs import ReportRun, RunStatus
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink, free_port
from tests.jobs.test_worker_recovery import kill_group, wait_for

pytestmark = pytest.mark.slow
OPS = "ops@acme.example"
SEND_AND_DRAIN = """
from jobs.shell import drain, send_now
run_id = send_now({schedule})
drain(timeout_s=120)
print("run", run_id)
"""
SEND_ONLY = """
from jobs.shell import drain, send_now
from models.errors import HeraldError
run_id = send_now({schedule})
print("run", run_id)
try:
    drain()
except HeraldError as exc:
    print(exc)
"""


def python_shell(lines: str, env: dict[str, str], cwd: Path) -> str:
    """What a `python -` session typing `lines` prints; it must exit cleanly."""
    result = subprocess.run([sys.executable, "-"], input=lines, env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_status(url: str, run_id: int) -> RunStatus:
    with session_scope(url) as session:
        return session.get(ReportRun, run_id).status


def assert_one_report_arrived(sink: MailSink) -> None:
    [mail] = sink.to(OPS)
    attachments = mail.attachments()
    assert sorted(name.rsplit(".", 1)[1] for name in attachments) == ["csv", "pdf"]
    assert attachments[next(n for n in attachments if n.endswith(".pdf"))].startswith(b"%PDF")
    assert "Video 1" in attachments[next(n for n in attachments if n.endswith(".csv"))].decode()


def test_a_shell_on_the_embedded_broker_sends_a_run_and_drain_delivers_it(
    tmp_path: Path, sqlite_template: Path, videos_file: str, mail_sink: MailSink  # noqa: F811
) -> None:
    # Given herald embedded (no REDIS_URL) on a SQLite file, with a schedule for ops@
    shutil.copy(sqlite_template, tmp_path / "herald.db")
    url = f"sqlite:///{tmp_path / 'herald.db'}"
    schedule = make_schedule(videos_file, emails=[OPS], url=url)
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("REDIS_URL", None)

    # When a shell sends the query stage of a new run and drains the in-process broker
    out = python_shell(SEND_AND_DRAIN.format(schedule=schedule), env, tmp_path)

    # Then the run went through every stage in that shell, and the e-mail arrived
    run_id = int(out.split()[-1])
    assert run_status(url, run_id) == RunStatus.SUCCESS
    assert_one_report_arrived(mail_sink)


def test_a_shell_on_redis_sends_a_run_and_a_running_worker_delivers_it(
    tmp_path: Path, create_pg_database, redis_namespace: str, videos_file: str,  # noqa: F811
    mail_sink: MailSink,  # noqa: F811
) -> None:
    # Given herald on PostgreSQL and Redis, with a `dramatiq jobs` worker running
    url = create_pg_database()
    migrate.upgrade(url)
    schedule = make_schedule(videos_file, emails=[OPS], url=url)
    env = {**os.environ, "DATABASE_URL": url, "dramatiq_prom_port": str(free_port()),
           "dramatiq_prom_db": str(tmp_path / "prometheus")}
    worker = subprocess.Popen(["dramatiq", "jobs", "--processes", "1", "--threads", "2"], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        # When a shell sends the query stage of a new run (drain() has nothing to do there)
        out = python_shell(SEND_ONLY.format(schedule=schedule), env, tmp_path)
        run_id = int(out.split()[1])

        # Then the worker takes it and the e-mail arrives
        wait_for(lambda: run_status(url, run_id) in (RunStatus.SUCCESS, RunStatus.FAILED),
                 timeout=90)
    finally:
        kill_group(worker, signal.SIGTERM)
    assert run_status(url, run_id) == RunStatus.SUCCESS
    assert_one_report_arrived(mail_sink)
    assert "drain() runs the in-process broker's messages, but REDIS_URL is set" in out
