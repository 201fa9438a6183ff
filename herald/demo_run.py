"""`herald demo`: the whole herald in one foreground process, on SQLite files in a directory.

One process holds every part a deployment spreads over machines: Dramatiq workers consuming
the in-process broker (a StubBroker: no REDIS_URL), the minute tick that feeds them, an SMTP
server and a Telegram Bot API stand-in that keep what they receive, the HTTP API (uvicorn on a
thread: what it sends reaches the in-process broker) and the admin (Streamlit, a child process).
Every part gets the same settings; Ctrl-C or SIGTERM stops them all.

The in-process broker keeps nothing across starts: a run still queued when the demo stops
is sent again by the tick of the next start, once it has waited HERALD_REQUEUE_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker

from herald.capture import LOCALHOST, MailCapture, TelegramCapture, port_is_free
from herald.demo import (
    DEMO_REPORT,
    DemoLogin,
    clear_demo,
    control_url,
    demo_token,
    describe_schedules,
    holds_demo,
    new_login,
    seed_demo,
    stored_login,
)
from models.db import session_scope, utcnow
from models.errors import HeraldError, InvalidInput, RenderError
from models.settings import get_settings

log = logging.getLogger("herald.demo")
ADMIN_START_TIMEOUT_S = 90
ADMIN_STOP_TIMEOUT_S = 15
MAIL_FROM = "Herald demo <reports@example.com>"
BOT_TOKEN = "123456:herald-demo-bot-token"
# Settings from the environment or .env that would send the demo elsewhere; "" reads as unset.
CLEARED = ("MAIL_SMTP_USER", "MAIL_SMTP_PASS", "MAIL_SMTP_CA_FILE")


@dataclass(frozen=True)
class DemoOptions:
    directory: Path
    reset: bool = False
    port: int = 8501           # the admin's
    smtp_port: int = 0         # 0: any free port
    telegram_port: int = 0
    admin: bool = True
    api_port: int = 8000       # herald api's
    api: bool = True


def seconds_to_next_minute(now: float) -> float:
    """From the instant `now` (seconds since the epoch) to the start of the next minute."""
    return 60.0 - now % 60.0


def tick_every_minute(stop: threading.Event) -> None:
    """The minute tick, as periodiq triggers it: at start, then at each minute's start; the
    runs it claims go to the workers through the broker."""
    from jobs.dispatch import enqueue_runs
    from jobs.tick import tick

    while True:
        try:
            tick(utcnow(), enqueue_runs)
        except Exception:  # the next minute tries again, as with periodiq
            log.exception("the tick failed")
        if stop.wait(seconds_to_next_minute(time.time())):
            return


def demo_environment(directory: Path, smtp_port: int, telegram_url: str,
                     api_port: int | None = None) -> dict[str, str]:
    """The settings every part of the demo runs with (its e-mails' unsubscribe links lead to
    its API, when it serves one)."""
    return {"DATABASE_URL": control_url(directory), "MAIL_SMTP_HOST": LOCALHOST,
            "HERALD_PUBLIC_URL": f"http://{LOCALHOST}:{api_port}" if api_port else "",
            "MAIL_SMTP_PORT": str(smtp_port), "MAIL_SMTP_SECURE": "false", "MAIL_FROM": MAIL_FROM,
            "TELEGRAM_API_URL": telegram_url, "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "HERALD_DEMO_DIR": str(directory), **dict.fromkeys(CLEARED, "")}


def use_environment(environment: dict[str, str]) -> None:
    """Apply `environment` to this process (the admin inherits it) and re-read the settings."""
    os.environ.update(environment)
    os.environ.pop("REDIS_URL", None)
    get_settings.cache_clear()
    if get_settings().redis_url is not None:
        raise InvalidInput("REDIS_URL is set in .env; the demo runs its own in-process broker, "
                           "so run it from a directory without that .env.")


def start_workers() -> dramatiq.Worker:
    """Dramatiq workers in this process on herald's broker from the settings (a StubBroker
    here), booted as a `dramatiq jobs` process boots them."""
    from jobs.broker import installed_broker
    from jobs.worker import in_process_worker

    broker = installed_broker()
    if not isinstance(broker, StubBroker):
        raise HeraldError("herald's broker was set up before the demo's settings; start "
                          "`herald demo` in a fresh process.")
    return in_process_worker(broker)


def stop_workers(worker: dramatiq.Worker) -> None:
    from jobs.worker import WORKER_STOP_TIMEOUT_MS

    worker.stop(timeout=WORKER_STOP_TIMEOUT_MS)
    worker.broker.close()


def start_admin(directory: Path, port: int) -> subprocess.Popen:
    """`streamlit run admin/app.py` as `herald admin` runs it, in its own process group (so
    the demo stops it, and whatever it started, itself), its output in a log file."""
    from herald.cli.admin import streamlit_command

    with (directory / "herald-admin.log").open("ab") as output:
        return subprocess.Popen(streamlit_command(port, LOCALHOST), env=os.environ.copy(),
                                stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


class ApiThread:
    """`herald api` on a thread of this process: its sends reach the in-process broker."""

    def __init__(self, port: int) -> None:
        import uvicorn

        from api.app import create_app

        self.server = uvicorn.Server(uvicorn.Config(create_app(), host=LOCALHOST, port=port,
                                                    log_config=None, access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="api")

    def start(self, stop: threading.Event) -> ApiThread:
        self.thread.start()
        deadline = time.monotonic() + ADMIN_START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive():
                raise HeraldError("The API exited at start; see the lines above.")
            if time.monotonic() > deadline or stop.wait(0.05):
                break
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


def wait_for_admin(admin: subprocess.Popen, port: int, stop: threading.Event) -> bool:
    """True once the admin answers its health check; False if stopped meanwhile."""
    deadline = time.monotonic() + ADMIN_START_TIMEOUT_S
    while not stop.is_set():
        if admin.poll() is not None:
            raise HeraldError(f"The admin exited at start (status {admin.returncode}); see "
                              f"herald-admin.log in the demo directory.")
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/_stcore/health",
                                        timeout=2) as answer:
                if answer.read() == b"ok":
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HeraldError(f"The admin did not answer within {ADMIN_START_TIMEOUT_S} s; see "
                              f"herald-admin.log in the demo directory.")
        stop.wait(0.3)
    return False


def stop_admin(admin: subprocess.Popen) -> None:
    """SIGTERM to the admin's process group; SIGKILL if it has not stopped after a while (its
    leader not yet reaped, so the group id is still the admin's)."""
    try:
        os.killpg(admin.pid, signal.SIGTERM)
        admin.wait(timeout=ADMIN_STOP_TIMEOUT_S)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        log.warning("the admin did not stop in %s s; killing it", ADMIN_STOP_TIMEOUT_S)
        os.killpg(admin.pid, signal.SIGKILL)
    admin.wait()


def chromium_note() -> str | None:
    """Real PDFs need Chromium; without one the demo still delivers, with text-only PDFs
    (RENDER_PDF_STUB), and says so."""
    settings = get_settings()
    if settings.render_pdf_stub:
        return None
    from playwright.sync_api import sync_playwright

    from renderers.browser import find_chromium

    with sync_playwright() as playwright:
        bundled = playwright.chromium.executable_path
    try:
        find_chromium(settings.chromium_path, bundled)
    except RenderError as exc:
        os.environ["RENDER_PDF_STUB"] = "true"
        get_settings.cache_clear()
        return f"PDF: {exc} Until then the demo's PDFs are text-only stand-ins."
    return None


def check_ports(options: DemoOptions) -> None:
    for port, option in ((options.port if options.admin else 0, "--port"),
                         (options.api_port if options.api else 0, "--api-port"),
                         (options.smtp_port, "--smtp-port"),
                         (options.telegram_port, "--telegram-port")):
        if port and not port_is_free(port):
            raise InvalidInput(f"Port {port} is already in use (another herald demo or admin?); "
                               f"stop that, or pass {option} with a free port.")


def prepare(options: DemoOptions, say: Callable[[str], None]) -> DemoLogin | None:
    """Seed the demo when it is new or `--reset`; otherwise keep its history."""
    directory = options.directory
    if options.reset or not holds_demo(directory):
        login = new_login(os.environ)  # refused before anything is deleted
        clear_demo(directory)
        seed_demo(directory, login, utcnow())
        say(f"herald demo: created in {directory}"
            + (" (--reset: the earlier history and messages are deleted)" if options.reset else ""))
    else:
        say(f"herald demo: continuing in {directory} (history kept; --reset starts over)")
    login = stored_login(directory)
    email, password = os.environ.get("HERALD_DEMO_EMAIL"), os.environ.get("HERALD_DEMO_PASSWORD")
    if login and ((email and email != login.email) or (password and not login.from_environment)):
        say("HERALD_DEMO_EMAIL and HERALD_DEMO_PASSWORD apply when the demo is created; the "
            "login below is the one it was created with (--reset starts over with yours).")
    return login


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> None:
    """Run every part until SIGINT or SIGTERM, then stop them all (the history stays)."""
    directory = options.directory.resolve()
    options = replace(options, directory=directory)
    check_ports(options)
    directory.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as parts:
            login = prepare(options, say)
            mail = MailCapture(directory, options.smtp_port).start()
            parts.callback(mail.stop)
            telegram = TelegramCapture(directory, BOT_TOKEN, options.telegram_port).start()
            parts.callback(telegram.stop)
            use_environment(demo_environment(directory, mail.port, telegram.url,
                                             options.api_port if options.api else None))
            note = chromium_note()
            parts.callback(stop_workers, start_workers())
            ticker = threading.Thread(target=tick_every_minute, args=(stop,), name="tick")
            ticker.start()
            parts.callback(ticker.join)
            parts.callback(stop.set)  # first, whatever ends the demo
            if options.api:
                parts.callback(ApiThread(options.api_port).start(stop).stop)
                token = demo_token(directory, utcnow())
            admin = start_admin(directory, options.port) if options.admin else None
            if admin is not None:
                parts.callback(stop_admin, admin)
                if not wait_for_admin(admin, options.port, stop):
                    return
            with session_scope() as session:
                schedules = describe_schedules(session)
            for line in [*schedules, *([note] if note else [])]:
                say(line)
            say(f"e-mail: a local SMTP server on {LOCALHOST}:{mail.port} keeps every message "
                f"in {mail.path} (a Maildir)")
            say(f"Telegram: a stand-in Bot API at {telegram.url} keeps every document in "
                f"{telegram.root}")
            if admin is not None:
                say(f"admin: http://{LOCALHOST}:{options.port}  {login_text(login)}; "
                    f"its Inbox page shows what was sent")
            if options.api:
                say(f"API: http://{LOCALHOST}:{options.api_port}/api/v1 (docs at /api/v1/docs), "
                    f"token {token} (every scope of the demo tenant), e.g.\n"
                    f"  curl -H 'Authorization: Bearer {token}' "
                    f"'http://{LOCALHOST}:{options.api_port}/api/v1/reports/{DEMO_REPORT.stem}"
                    f"/export?format=pdf' -o report.pdf")
            say("The every-minute schedules deliver at the start of each minute. "
                "Ctrl-C stops the demo.")
            while not stop.wait(1.0):
                if admin is not None and admin.poll() is not None:
                    raise HeraldError(f"The admin exited (status {admin.returncode}); see "
                                      f"herald-admin.log in {directory}.")
            say("herald demo: stopping…")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"herald demo: stopped; the history stays in {directory}")


def login_text(login: DemoLogin | None) -> str:
    if login is None:
        return "(log in as the demo's user)"
    if login.password is not None:
        return f"log in as {login.email} with password {login.password}"
    return f"log in as {login.email} with the HERALD_DEMO_PASSWORD the demo was created with"
