"""Fixtures for delivery: a tenant database, a real SMTP server, a Bot API server, schedules."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.settings import get_settings
from tests.delivery.servers import BotApi, MailSink
from tests.seeding import add_schedule, add_tenant, save_report

TOKEN = "4242424242:AAH-secret-bot-token-for-tests"
SENDER = "Acme Reports <reports@acme.example>"
ROWS = 300
REPORT = {
    "slug": "video-performance", "title": "Video performance", "params": {"campaign": "Campaign A"},
    "sections": [
        {"kind": "kpi", "title": "Total views",
         "sql": "SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign"},
        {"kind": "chart", "title": "Views by platform",
         "sql": "SELECT platform, sum(views) AS views FROM videos GROUP BY platform ORDER BY 1",
         "chart": {"mark": "bar", "x": "platform", "y": "views"}},
        {"kind": "table", "title": "Top videos",
         "sql": "SELECT title, platform, views FROM videos ORDER BY views DESC LIMIT 5"},
    ],
    "csv": {"sql": "SELECT title, platform, views, published_at FROM videos "
                   "WHERE campaign_tag = :campaign ORDER BY id"},
}


@pytest.fixture(scope="session")
def videos_db(create_tenant_database) -> str:
    """A tenant database: 300 videos, half of them in Campaign A; its read-only role's URL."""
    db = create_tenant_database()
    url = db.url
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE videos (id int PRIMARY KEY, title text, platform text, "
                     "campaign_tag text, views bigint, published_at date)")
        with conn.cursor().copy("COPY videos FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, f"Video {i} «{['tiktok', 'youtube', 'vk'][i % 3]}»",
                                ["tiktok", "youtube", "vk"][i % 3],
                                "Campaign A" if i % 2 else "Campaign B", (i * 7919) % 100_003,
                                date(2026, 1, 1) + timedelta(days=i % 90)))
    return url


@pytest.fixture
def videos_file(tmp_path: Path) -> str:
    """A SQLite tenant data source with 5 videos in Campaign A, for tests about sending."""
    path = tmp_path / "videos.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE videos (id integer PRIMARY KEY, title text, platform text, "
                     "campaign_tag text, views integer, published_at text)")
        conn.executemany("INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?)",
                         [(i, f"Video {i}", "vk", "Campaign A", i * 10, "2026-01-02") for i in range(5)])
    conn.close()
    return f"sqlite:///{path}"


def source_rows(url: str) -> list[list[str]]:
    """What the CSV must hold, read from the tenant database independently of herald."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT title, platform, views, published_at FROM videos "
                            "WHERE campaign_tag = 'Campaign A' ORDER BY id").fetchall()
    return [[t, p, str(v), d.isoformat()] for t, p, v, d in rows]


def total_views(url: str) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute("SELECT sum(views) FROM videos WHERE campaign_tag = 'Campaign A'").fetchone()[0]


def csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode(), newline="")))


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DELIVERY_BACKOFF_SECONDS", "0.2")
    monkeypatch.setenv("HERALD_DELIVERY_BACKOFF_MAX_SECONDS", "1")
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    get_settings.cache_clear()


@pytest.fixture
def mail_sink(monkeypatch: pytest.MonkeyPatch, fast_retries) -> Iterator[MailSink]:
    sink = MailSink()
    monkeypatch.setenv("MAIL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MAIL_SMTP_PORT", str(sink.port))
    monkeypatch.setenv("MAIL_FROM", SENDER)
    get_settings.cache_clear()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def bot_api(monkeypatch: pytest.MonkeyPatch, fast_retries) -> Iterator[BotApi]:
    api = BotApi(TOKEN).start()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", api.url)
    get_settings.cache_clear()
    yield api
    api.stop()


def make_schedule(datasource: str, *, emails: Sequence[str] = (), chats: Sequence[str] = (),
                  formats: Sequence[str] = ("pdf", "csv"), report: dict = REPORT,
                  subject: str | None = None, url: str | None = None, slug: str = "acme") -> int:
    """A tenant reading `datasource`, the report, and a schedule sending it; returns its id."""
    with session_scope(url) as session:
        tenant = add_tenant(session, slug, "Acme Corp", "Europe/Berlin", datasource)
        save_report(session, tenant, parse_definition(report))
        schedule = add_schedule(session, tenant, report["slug"], now=utcnow(), cron_expr="0 9 * * *",
                                formats=list(formats), emails=emails, chats=chats, subject=subject)
        return schedule.id
