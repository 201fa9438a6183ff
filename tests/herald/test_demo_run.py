"""`herald demo` as a user runs it: a real process in a temporary directory, with real Chromium,
its own SMTP server and Telegram stand-in, Dramatiq workers, the minute tick and the admin.

The first start waits for the every-minute schedules' first delivery (the next minute's
start), reads it as the Inbox page and as a mail client would, and stops the demo with SIGINT:
every process it started must be gone and every port it listened on free. Later starts in the
same directory keep that history; `--reset` clears it.
"""

from __future__ import annotations

import csv
import io
import json
import mailbox
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright

from herald.capture import free_port, port_is_free
from herald.demo import DATASOURCE_DB, DEMO_REPORT
from models.errors import RenderError
from renderers.browser import find_chromium
from services.inbox import EMAIL, TELEGRAM, list_messages, read_message
from tests.conftest import service_missing
from tests.renderers.conftest import pdf_text

pytestmark = pytest.mark.slow
READY = "Ctrl-C stops the demo."
FIRST_DELIVERY_S = 90  # the next minute's start, then query, render and send
START_S = 120


@dataclass
class Demo:
    """A running `herald demo` and what it printed."""

    process: subprocess.Popen
    directory: Path
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read_output(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY in line:
                self.ready.set()
        self.ready.set()  # the output ended: the demo exited

    def wait_ready(self) -> None:
        assert self.ready.wait(START_S) and self.process.poll() is None, self.output()

    def output(self) -> str:
        log = self.directory / "demo.stderr"
        return "\n".join(self.lines) + "\n--- stderr ---\n" + (log.read_text()[-4000:] if log.exists() else "")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C sends it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"herald demo did not stop after SIGINT:\n{self.output()}")


def demo_environment() -> dict[str, str]:
    """The user's environment, without settings that would send the demo elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "REDIS_URL", "MAIL_", "TELEGRAM_", "HERALD_DEMO"))}
    env["RENDER_PDF_STUB"] = "false"  # real Chromium: the PDF's text is checked
    return env


def start_demo(directory: Path, *options: str) -> Demo:
    ports = {"admin": free_port(), "smtp": free_port(), "telegram": free_port(), "api": free_port()}
    with (directory / "demo.stderr").open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "herald", "demo", "--directory", str(directory),
             "--port", str(ports["admin"]), "--smtp-port", str(ports["smtp"]),
             "--telegram-port", str(ports["telegram"]), "--api-port", str(ports["api"]), *options],
            cwd=directory, env=demo_environment(), stdout=subprocess.PIPE, stderr=stderr,
            text=True)
    demo = Demo(process, directory, ports)
    threading.Thread(target=demo.read_output, daemon=True).start()
    return demo


def descendants(pid: int) -> set[tuple[int, str]]:
    """Every process below `pid`, as (pid, start time) so a reused pid is not mistaken for it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))):
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if stat := process_stat(child):
                found.add((child, stat[19]))
                todo.append(child)
    return found


def process_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state on (state, ppid, ...), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def demo_processes(directory: Path) -> set[tuple[int, str]]:
    """Every process whose environment names this demo: also those that left the tree (Chromium's
    crash handler detaches itself), as every part of the demo inherits HERALD_DEMO_DIR."""
    marker = f"HERALD_DEMO_DIR={directory.resolve()}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, another user's, or not a process
            continue
        if marker in environment and (stat := process_stat(int(entry.name))):
            found.add((int(entry.name), stat[19]))
    return found


def still_running(process: tuple[int, str]) -> bool:
    stat = process_stat(process[0])
    return stat is not None and stat[19] == process[1] and stat[0] != "Z"


def survivors(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """The `processes` still running once those on their way out had a few seconds to go."""
    deadline = time.monotonic() + 10
    while (running := {p for p in processes if still_running(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running


def herald_runs(directory: Path) -> list[dict]:
    """`herald runs --json` on the demo's database, as a user would list them."""
    env = {**demo_environment(), "DATABASE_URL": f"sqlite:///{directory / 'herald-demo.db'}"}
    done = subprocess.run([sys.executable, "-m", "herald", "runs", "--json", "--limit", "1000"],
                          env=env, cwd=directory, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def wait_for_first_delivery(demo: Demo) -> None:
    """Until an e-mail and a Telegram document arrived (the next minute's start, then some)."""
    deadline = time.monotonic() + FIRST_DELIVERY_S
    while time.monotonic() < deadline:
        channels = {m.channel for m in list_messages(demo.directory)}
        if {EMAIL, TELEGRAM} <= channels:
            return
        assert demo.process.poll() is None, demo.output()
        time.sleep(0.5)
    pytest.fail(f"nothing delivered within {FIRST_DELIVERY_S} s:\n{demo.output()}")


@dataclass
class FirstStart:
    directory: Path
    demo: Demo
    processes: set[tuple[int, str]]
    exit_status: int
    admin_health: bytes
    api_reports: list[dict]    # GET /api/v1/reports with the token the demo printed
    api_csv: bytes             # the report's CSV exported over the API


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstStart]:
    """A new demo, run until its first delivery, then stopped with SIGINT."""
    if shutil.which("pdftotext") is None:
        service_missing("pdftotext (poppler-utils)", FileNotFoundError("apt-get install poppler-utils"))
    with sync_playwright() as playwright:
        bundled = playwright.chromium.executable_path
    try:
        find_chromium(os.environ.get("HERALD_CHROMIUM_PATH"), bundled)
    except RenderError as exc:  # the demo would send text-only stand-in PDFs
        service_missing("Chromium", exc)
    directory = tmp_path_factory.mktemp("demo")
    demo = start_demo(directory)
    try:
        demo.wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.ports['admin']}/_stcore/health",
                                    timeout=10) as answer:
            health = answer.read()
        token = re.search(r"token (herald_\S+) ", "\n".join(demo.lines)).group(1)
        api = f"http://127.0.0.1:{demo.ports['api']}/api/v1/reports"
        headers = {"Authorization": f"Bearer {token}"}
        with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=30) as answer:
            api_reports = json.loads(answer.read())
        with urllib.request.urlopen(urllib.request.Request(
                f"{api}/{api_reports[0]['slug']}/export?format=csv", headers=headers), timeout=60) as answer:
            api_csv = answer.read()
        wait_for_first_delivery(demo)
        # Chromium, its driver, the admin: all up now
        processes = descendants(demo.process.pid) | demo_processes(directory)
    finally:
        status = demo.stop()
    yield FirstStart(directory, demo, processes, status, health, api_reports, api_csv)


def expected_csv(directory: Path) -> list[list[str]]:
    """The report's CSV query on the demo's data, straight from SQLite: header, then rows."""
    report = yaml.safe_load(DEMO_REPORT.read_text())
    with sqlite3.connect(directory / DATASOURCE_DB) as data:
        cursor = data.execute(report["csv"]["sql"], report["params"])
        header = [c[0] for c in cursor.description]
        rows = [["" if v is None else str(v) for v in row] for row in cursor]
    data.close()
    # a cell a spreadsheet would run as a formula ("@creator1") arrives with a leading quote
    return [header, *[["'" + v if v.startswith("@") else v for v in row] for row in rows]]


def total_views(directory: Path) -> int:
    with sqlite3.connect(directory / DATASOURCE_DB) as data:
        [(total,)] = data.execute("SELECT sum(views) FROM videos WHERE campaign_tag = 'Campaign A'")
    data.close()
    return total


def test_the_demo_delivers_a_report_within_a_minute_and_stops_cleanly(
        first_start: FirstStart, tmp_path: Path) -> None:
    directory, demo = first_start.directory, first_start.demo
    output = "\n".join(demo.lines)
    assert first_start.admin_health == b"ok"
    assert f"admin: http://127.0.0.1:{demo.ports['admin']}" in output
    assert re.search(r"log in as demo@example\.com with password \S{12,}", output), output
    assert f"API: http://127.0.0.1:{demo.ports['api']}/api/v1 (docs at /api/v1/docs), token herald_" in output
    assert [r["slug"] for r in first_start.api_reports] == ["video-performance"]
    assert list(csv.reader(io.StringIO(first_start.api_csv.decode("utf-8")))) == expected_csv(directory)
    kpi = f"{total_views(directory):,}"

    # The Inbox's data: the e-mail to the team with the PDF and the CSV, the PDF in the chat
    messages = list_messages(directory)
    mail = read_message(directory, next(m.id for m in messages if m.channel == EMAIL))
    assert mail.to == "team@example.com" and mail.subject.startswith("Video performance")
    assert mail.sender == "Herald demo <reports@example.com>"
    files = {a.filename.rsplit(".", 1)[1]: a for a in mail.attachments}
    assert sorted(files) == ["csv", "pdf"]
    text = pdf_text(files["pdf"].content, tmp_path).replace("\u202f", " ")
    assert "Video performance" in text and "Demo Media" in text
    assert "Total views" in text and kpi in text  # the KPI, computed from the data source
    assert "Top videos" in text and "RENDER_PDF_STUB" not in text  # printed by Chromium
    rows = list(csv.reader(io.StringIO(files["csv"].content.decode("utf-8"))))
    assert rows == expected_csv(directory)
    assert "Total views" in mail.html and kpi in mail.html.replace("\u202f", " ")

    chat = read_message(directory, next(m.id for m in messages if m.channel == TELEGRAM))
    assert chat.to == "chat 123456789" and kpi in chat.text.replace("\u202f", " ")
    [document] = chat.attachments
    assert document.media_type == "application/pdf" and document.content.startswith(b"%PDF")

    # The same e-mail as any mail client reads the SMTP server's Maildir
    maildir = mailbox.Maildir(directory / "mail", factory=None, create=False)
    raw = {message_from_bytes(maildir.get_bytes(key), policy=policy.default)["Message-ID"]:
           message_from_bytes(maildir.get_bytes(key), policy=policy.default) for key in maildir.keys()}
    first = next(m for m in raw.values() if m["Delivered-To"] == "team@example.com")
    assert {p.get_filename(): p.get_payload(decode=True) for p in first.iter_attachments()} == {
        a.filename: a.content for a in mail.attachments}

    # herald's history: both runs of that minute succeeded, each on a worker thread of its own
    # (their spans overlap; the tick would have run them one after the other)
    runs = [r for r in herald_runs(directory) if r["status"] == "success"]
    by_slot = {}
    for run in runs:
        by_slot.setdefault(run["scheduled_for"], []).append(run)
    pair = next(p for p in by_slot.values() if len(p) == 2)
    (a_start, a_end), (b_start, b_end) = [
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
        for r in pair]
    assert a_start < b_end and b_start < a_end
    assert all(d["status"] == "sent" for r in pair for d in r["deliveries"])

    # Ctrl-C stopped everything: a normal exit, no process left, no port held
    assert first_start.exit_status == 0, demo.output()
    assert "herald demo: stopped" in demo.lines[-1]
    assert len(first_start.processes) >= 3  # the admin, Playwright's driver, Chromium, ...
    assert survivors(first_start.processes | demo_processes(directory)) == set()
    assert {name: port_is_free(port) for name, port in demo.ports.items()} == {
        "admin": True, "smtp": True, "telegram": True, "api": True}


def test_a_second_start_keeps_the_history_and_reset_clears_it(first_start: FirstStart) -> None:
    directory = first_start.directory
    before_runs = {(r["id"], r["scheduled_for"]) for r in herald_runs(directory)}
    before_messages = {m.id for m in list_messages(directory)}
    password = re.search(r"with password (\S+);", "\n".join(first_start.demo.lines)).group(1)

    # When the demo starts again in the same directory
    again = start_demo(directory)
    try:
        again.wait_ready()
        runs_now = {(r["id"], r["scheduled_for"]) for r in herald_runs(directory)}
        messages_now = {m.id for m in list_messages(directory)}
    finally:
        assert again.stop() == 0, again.output()

    # Then the first start's runs and messages are all still there, and the same login works
    assert before_runs and before_runs <= runs_now
    assert before_messages <= messages_now
    assert any("continuing in" in line for line in again.lines)
    assert f"with password {password};" in "\n".join(again.lines)
    token = re.search(r"token (herald_\S+) ", "\n".join(first_start.demo.lines)).group(1)
    assert f"token {token} " in "\n".join(again.lines)   # the same token, while it is valid

    # When it starts with --reset
    reset = start_demo(directory, "--reset")
    try:
        reset.wait_ready()
        runs_after = {(r["id"], r["scheduled_for"]) for r in herald_runs(directory)}
        messages_after = {m.id for m in list_messages(directory)}
    finally:
        assert reset.stop() == 0, reset.output()

    # Then none of that history is left: no earlier run (ids start again), no earlier message
    assert not runs_after & runs_now
    assert not messages_after & messages_now
    assert any("--reset" in line and "deleted" in line for line in reset.lines)
