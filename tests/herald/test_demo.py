"""The demo's parts without its process: the seeded data and login, the capture servers (real
SMTP and HTTP on localhost) with herald sending to them, and the inbox reading them back.
`test_demo_run.py` runs the whole `herald demo` process."""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from herald.capture import MailCapture, TelegramCapture
from herald.cli import app
from herald.demo import (
    CONTROL_DB,
    DATASOURCE_DB,
    LOGIN_FILE,
    control_url,
    new_login,
    seed_demo,
    stored_login,
)
from herald.demo_run import (
    BOT_TOKEN,
    DemoOptions,
    demo_environment,
    prepare,
    seconds_to_next_minute,
)
from models.db import get_engine, session_scope, utcnow
from models.errors import InvalidInput, NotFound
from models.settings import get_settings
from models.tenancy import User
from services import schedules
from services.access import OPERATOR
from services.accounts import verify_password
from services.inbox import EMAIL, TELEGRAM, list_messages, read_message
from tests.seeding import get_tenant


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "demo"
    yield directory
    get_engine(control_url(directory)).dispose()


def test_the_seed_makes_a_tenant_its_data_schedules_and_a_login(demo_dir: Path) -> None:
    login = new_login({})
    seed_demo(demo_dir, login, utcnow())

    with sqlite3.connect(demo_dir / DATASOURCE_DB) as data:
        assert data.execute("SELECT count(*) FROM videos").fetchone() == (500,)
    data.close()
    with session_scope(control_url(demo_dir)) as session:
        tenant = get_tenant(session, "demo")
        rows = schedules.list_schedule_details(session, OPERATOR, tenant)
        user = session.exec(select(User).where(User.email == "demo@example.com")).one()
        assert verify_password(user, login.password)
    assert [(r["cron"], r["formats"], [x["address"] for x in r["recipients"]]) for r in rows] == [
        ("* * * * *", ["pdf", "csv"], ["team@example.com"]),
        ("* * * * *", ["pdf"], ["123456789"]),
        ("0 9 * * *", ["pdf", "csv"], []),
    ]
    # the generated password is kept, so every later start prints the same one
    assert stored_login(demo_dir) == login and len(login.password) >= 12
    assert (demo_dir / LOGIN_FILE).stat().st_mode & 0o077 == 0


def test_a_login_from_the_environment_is_used_and_its_password_not_written(demo_dir: Path) -> None:
    login = new_login({"HERALD_DEMO_EMAIL": "me@example.org", "HERALD_DEMO_PASSWORD": "a secret pw"})
    seed_demo(demo_dir, login, utcnow())
    assert "a secret pw" not in (demo_dir / LOGIN_FILE).read_text()
    assert stored_login(demo_dir).email == "me@example.org"
    with pytest.raises(InvalidInput, match="^HERALD_DEMO_PASSWORD is shorter than 8 characters; "
                                           "choose a longer one.$"):
        new_login({"HERALD_DEMO_PASSWORD": "short"})


@pytest.mark.parametrize("left_there", ["an empty file", "herald's tables, no demo"])
def test_a_demo_started_on_a_database_without_one_sets_itself_up(demo_dir: Path,
                                                                  left_there: str) -> None:
    """What a command run with a mistyped DATABASE_URL could leave: not a demo to continue."""
    demo_dir.mkdir()
    (demo_dir / CONTROL_DB).touch()
    if left_there != "an empty file":
        from models import migrate

        migrate.upgrade(control_url(demo_dir))
    said: list[str] = []
    prepare(DemoOptions(demo_dir, admin=False, api=False), said.append)
    assert said == [f"herald demo: created in {demo_dir}"]
    with session_scope(control_url(demo_dir)) as session:
        assert get_tenant(session, "demo").name == "Demo Media"
    said.clear()
    prepare(DemoOptions(demo_dir, admin=False, api=False), said.append)
    assert said == [f"herald demo: continuing in {demo_dir} (history kept; --reset starts over)"]


def test_a_busy_admin_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--directory", str(tmp_path / "d"),
                                          "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: Port {port} is already in use (another herald demo "
                                     f"or admin?); stop that, or pass --port with a free port.")
    assert not (tmp_path / "d").exists()


def test_the_tick_waits_for_the_start_of_the_next_minute() -> None:
    assert seconds_to_next_minute(1_800_000_000.0) == 60.0  # exactly on a minute
    assert seconds_to_next_minute(1_800_000_045.5) == 14.5


def deliver_demo_schedules(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed a demo in `directory` and run its two every-minute schedules once through herald's
    pipeline, to the demo's SMTP server and Telegram stand-in (stub PDFs: no browser)."""
    seed_demo(directory, new_login({}), utcnow())
    mail = MailCapture(directory).start()
    telegram = TelegramCapture(directory, BOT_TOKEN).start()
    try:
        for name, value in demo_environment(directory, mail.port, telegram.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("REDIS_URL", raising=False)
        monkeypatch.setenv("RENDER_PDF_STUB", "true")
        get_settings.cache_clear()
        for schedule in ("1", "2"):
            result = CliRunner().invoke(app, ["run", schedule], catch_exceptions=False)
            assert result.stdout.strip() == f"run {schedule}: success", result.output
    finally:
        telegram.stop()
        mail.stop()
        get_settings.cache_clear()


def test_the_capture_servers_keep_what_herald_sends_and_the_inbox_reads_it(
        demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deliver_demo_schedules(demo_dir, monkeypatch)

    newest_first = list_messages(demo_dir)
    assert [(m.channel, m.to) for m in newest_first] == [
        (TELEGRAM, "chat 123456789"), (EMAIL, "team@example.com")]
    chat, mail = (read_message(demo_dir, m.id) for m in newest_first)
    assert sorted(a.filename.rsplit(".", 1)[1] for a in mail.attachments) == ["csv", "pdf"]
    assert mail.subject.startswith("Video performance") and "Total views" in mail.html
    assert mail.sender == "Herald demo <reports@example.com>"
    [document] = chat.attachments
    assert document.content.startswith(b"%PDF") and document.media_type == "application/pdf"
    assert chat.text.startswith("Video performance (Demo Media)")
    assert newest_first[0].attachments == (document.filename,)


def test_the_telegram_stand_in_answers_other_tokens_and_methods_as_telegram_does(
        tmp_path: Path) -> None:
    telegram = TelegramCapture(tmp_path, BOT_TOKEN).start()
    answers = []
    try:
        for path in ("/bot999:wrong/sendDocument", f"/bot{BOT_TOKEN}/getUpdates",
                     f"/bot{BOT_TOKEN}/sendDocument?chat_id=5"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(telegram.url + path, data=b""))
            answers.append((refused.value.code, json.load(refused.value)["description"]))
    finally:
        telegram.stop()
    assert answers == [(401, "Unauthorized"), (404, "Not Found"),
                       (400, "Bad Request: there is no document in the request")]
    assert list_messages(tmp_path) == []


def test_an_unknown_message_is_one_sentence(tmp_path: Path) -> None:
    for message_id in ("mail/nope", "mail/../../etc/passwd", "telegram/000009", "other"):
        with pytest.raises(NotFound, match=r"^No captured message .*; pick one from the inbox list\.$"):
            read_message(tmp_path, message_id)
