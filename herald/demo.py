"""`herald demo`: an embedded herald on SQLite files, seeded with a tenant, its data
source, a report and schedules, so every part can be tried without services."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models import catalog, migrate, scheduling
from models.db import session_scope, utcnow
from models.definition import load_definition

DEMO_REPORT = Path(__file__).with_name("demo_files") / "video-performance.yaml"
PLATFORMS = ("tiktok", "youtube", "instagram", "vk")


def write_demo_datasource(path: Path, rows: int = 500, seed: int = 7) -> None:
    """A tenant database of videos with the columns the seed system exported."""
    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE videos (title TEXT, video_url TEXT, platform TEXT, status TEXT,
            campaign_tag TEXT, channel_username TEXT, published_at TEXT, created_at TEXT,
            views INTEGER, likes INTEGER, comments INTEGER, reposts INTEGER)""")
        db.executemany("INSERT INTO videos VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (f"Video {i}", f"https://videos.example.com/{i}", rng.choice(PLATFORMS), "active",
             rng.choice(("Campaign A", "Campaign B")), f"@creator{i % 37}",
             (start + timedelta(hours=7 * i)).date().isoformat(),
             (start + timedelta(hours=7 * i - 3)).isoformat(),
             views := rng.randint(100, 500_000), views // rng.randint(10, 40),
             views // rng.randint(100, 400), views // rng.randint(200, 900))
            for i in range(rows)
        ])


def run_demo(directory: Path) -> list[dict]:
    """Create (or recreate) the demo databases in `directory`; returns the schedules."""
    directory.mkdir(parents=True, exist_ok=True)
    control = directory / "herald-demo.db"
    control.unlink(missing_ok=True)
    datasource = directory / "herald-demo-data.db"
    write_demo_datasource(datasource)
    url = f"sqlite:///{control}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        tenant = catalog.add_tenant(session, "demo", "Demo Media", "Europe/Moscow",
                                    f"sqlite:///{datasource}", emails=["team@example.com"])
        catalog.save_report(session, tenant, load_definition(DEMO_REPORT))
        now = utcnow()
        created = [
            scheduling.add_schedule(session, tenant, "video-performance", now=now, cadence="daily",
                                    at="09:00", formats=["pdf", "csv"]),
            scheduling.add_schedule(session, tenant, "video-performance", now=now,
                                    cron_expr="30 2 * * *", timezone="America/New_York",
                                    formats=["csv"], chats=["123456789"]),
        ]
        return [scheduling.schedule_to_dict(session, s) for s in created]
