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
