"""`herald demo` sets up a working embedded herald from nothing."""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from herald.cli import app


def test_demo_creates_databases_a_report_and_schedules(tmp_path, monkeypatch) -> None:
    result = CliRunner().invoke(app, ["demo", "--directory", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "schedule 1: video-performance pdf+csv At 09:00 (Europe/Moscow)" in result.stdout

    with sqlite3.connect(tmp_path / "herald-demo-data.db") as data:
        assert data.execute("SELECT count(*) FROM videos").fetchone() == (500,)

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'herald-demo.db'}")
    from models.settings import get_settings

    get_settings.cache_clear()
    listed = CliRunner().invoke(app, ["schedule", "list", "--tenant", "demo", "--json"])
    get_settings.cache_clear()
    assert [s["cron"] for s in json.loads(listed.stdout)] == ["0 9 * * *", "30 2 * * *"]


def test_the_demo_delivers_its_report_to_a_local_mail_server(tmp_path, monkeypatch) -> None:
    # Given the demo, and a local SMTP server as the README suggests
    from models.settings import get_settings
    from tests.delivery.servers import MailSink

    CliRunner().invoke(app, ["demo", "--directory", str(tmp_path)], catch_exceptions=False)
    sink = MailSink().start()
    try:
        for name, value in {"DATABASE_URL": f"sqlite:///{tmp_path / 'herald-demo.db'}",
                            "MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(sink.port),
                            "MAIL_FROM": "reports@example.com"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("REDIS_URL", raising=False)
        get_settings.cache_clear()

        # When schedule 1 runs now
        result = CliRunner().invoke(app, ["run", "1"], catch_exceptions=False)
        history = CliRunner().invoke(app, ["runs"], catch_exceptions=False)
    finally:
        sink.stop()
        get_settings.cache_clear()

    # Then the tenant's fallback address got the PDF and the CSV, and the history says so
    assert result.stdout.strip() == "run 1: success"
    [mail] = sink.to("team@example.com")
    assert sorted(name.rsplit(".", 1)[1] for name in mail.attachments()) == ["csv", "pdf"]
    assert "team@example.com" in history.stdout and "sent" in history.stdout
