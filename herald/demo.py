"""The demo's data: a tenant with its own SQLite data source, the video-performance report,
schedules (two fire every minute: PDF and CSV by e-mail, the PDF to a Telegram chat) and a
login for the admin. `herald/demo_run.py` runs herald on it.

Everything lives in one directory, so `--reset` (or deleting the directory) starts over.
The docker-compose stack seeds the same tenant, report and videos into PostgreSQL
(`seed_stack_demo`, run by `herald db seed-demo`).
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import psycopg.sql
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from models import migrate
from models.audit import SYSTEM
from models.db import get_engine, session_scope
from models.definition import load_definition
from models.errors import HeraldError, InvalidInput
from models.tenancy import Tenant
from services import accounts, members, reports, schedules, tenants, tokens
from services.access import Operator
from services.inbox import MAIL_DIR, TELEGRAM_DIR
from tenantdb import libpq_conninfo, parse_datasource

DEMO_TENANT = "demo"
DEMO_REPORT = Path(__file__).with_name("demo_files") / "video-performance.yaml"
PLATFORMS = ("tiktok", "youtube", "instagram", "vk")
CONTROL_DB = "herald-demo.db"          # herald's own tables: schedules, runs, users, ...
DATASOURCE_DB = "herald-demo-data.db"  # the tenant's data, which its reports query
LOGIN_FILE = "herald-demo-login.json"  # the demo login, printed at every start
TOKEN_FILE = "herald-demo-api-token"   # the demo's API token (all scopes), printed at every start
DEFAULT_EMAIL = "demo@example.com"
TEAM_EMAIL = "team@example.com"
TELEGRAM_CHAT = "123456789"
MIN_PASSWORD = accounts.MIN_PASSWORD  # the admin's rule for every password
SEEDER = Operator(SYSTEM)  # the demo's own changes: the change audit says "system"


@dataclass(frozen=True)
class DemoLogin:
    """The admin login the demo creates: an admin of the demo tenant."""

    email: str
    password: str | None    # None: read back from a demo whose password was not written down
    from_environment: bool  # HERALD_DEMO_PASSWORD, which is never written to the directory


def control_url(directory: Path) -> str:
    return f"sqlite:///{Path(directory) / CONTROL_DB}"


VIDEO_COLUMNS = ("(title TEXT, video_url TEXT, platform TEXT, status TEXT, campaign_tag TEXT, "
                 "channel_username TEXT, published_at TEXT, created_at TEXT, views INTEGER, "
                 "likes INTEGER, comments INTEGER, reposts INTEGER)")


def demo_videos(rows: int = 500, seed: int = 7) -> list[tuple]:
    """The demo tenant's videos, with the columns the seed system exported; the same rows on
    every call, so each demo (SQLite or the docker-compose stack) reports the same figures."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [(f"Video {i}", f"https://videos.example.com/{i}", rng.choice(PLATFORMS), "active",
             rng.choice(("Campaign A", "Campaign B")), f"@creator{i % 37}",
             (start + timedelta(hours=7 * i)).date().isoformat(),
             (start + timedelta(hours=7 * i - 3)).isoformat(),
             views := rng.randint(100, 500_000), views // rng.randint(10, 40),
             views // rng.randint(100, 400), views // rng.randint(200, 900))
            for i in range(rows)]


def write_demo_datasource(path: Path, rows: int = 500, seed: int = 7) -> None:
    """The demo's videos in a new SQLite file at `path`."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE videos {VIDEO_COLUMNS}")
        db.executemany("INSERT INTO videos VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", demo_videos(rows, seed))
    db.close()


def write_demo_videos_postgres(url: str, reader: str | None = None) -> None:
    """The demo's videos in the PostgreSQL database at `url` (a role that may create tables),
    replacing a `videos` table left there; `reader`, the role herald reads it as, may SELECT."""
    libpq = libpq_conninfo(make_url(url))  # a password with a space or an @ arrives whole
    try:
        with psycopg.connect(libpq, connect_timeout=10) as db:
            db.execute("DROP TABLE IF EXISTS videos")
            db.execute(f"CREATE TABLE videos {VIDEO_COLUMNS}")
            with db.cursor().copy("COPY videos FROM STDIN") as copy:
                for row in demo_videos():
                    copy.write_row(row)
            if reader:
                db.execute(psycopg.sql.SQL("GRANT SELECT ON videos TO {}").format(
                    psycopg.sql.Identifier(reader)))
    except psycopg.Error as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HeraldError(f"The demo's videos could not be written to {tenants.redact_url(url)} "
                          f"({why}); give a data URL whose role may create tables there.") from None


def new_login(environ: Mapping[str, str]) -> DemoLogin:
    """HERALD_DEMO_EMAIL and HERALD_DEMO_PASSWORD when set, else demo@example.com with a
    generated password (kept in the demo directory, so every start prints the same one)."""
    email = environ.get("HERALD_DEMO_EMAIL") or DEFAULT_EMAIL
    password = environ.get("HERALD_DEMO_PASSWORD")
    if password is None:
        return DemoLogin(email, secrets.token_urlsafe(12), from_environment=False)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"HERALD_DEMO_PASSWORD is shorter than {MIN_PASSWORD} characters; "
                           f"choose a longer one.")
    return DemoLogin(email, password, from_environment=True)


def stored_login(directory: Path) -> DemoLogin | None:
    """The login the demo in `directory` was created with, if it says."""
    try:
        data = json.loads((Path(directory) / LOGIN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    password = data.get("password")
    return DemoLogin(data["email"], password, from_environment=password is None)


def holds_demo(directory: Path) -> bool:
    """Whether DIRECTORY holds a demo to continue: its control database exists, has herald's
    tables (upgraded here when an older herald made them) and the demo tenant. An empty or
    unrelated file there is not a demo."""
    url = control_url(directory)
    if migrate.current_revision(url) is None:
        return False
    migrate.upgrade(url)
    with session_scope(url) as session:
        return session.exec(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)).first() is not None


def clear_demo(directory: Path) -> None:
    """Delete what an earlier demo left in `directory`: its history, data and captured messages."""
    directory = Path(directory)
    get_engine(control_url(directory)).dispose()
    for name in (CONTROL_DB, f"{CONTROL_DB}-wal", f"{CONTROL_DB}-shm", DATASOURCE_DB, LOGIN_FILE,
                 TOKEN_FILE):
        (directory / name).unlink(missing_ok=True)
    for name in (MAIL_DIR, TELEGRAM_DIR):
        shutil.rmtree(directory / name, ignore_errors=True)


def seed_demo(directory: Path, login: DemoLogin, now: datetime) -> None:
    """Create the demo in an empty `directory`: herald's tables, the tenant and its data
    source, the report, its schedules and the login (the password written only if generated)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    datasource = directory / DATASOURCE_DB
    write_demo_datasource(datasource)
    url = control_url(directory)
    migrate.upgrade(url)
    with session_scope(url) as session:
        add_demo_tenant(session, f"sqlite:///{datasource}", login, now, telegram=True)
    _write_login(directory / LOGIN_FILE, login)


def seed_stack_demo(data_url: str, datasource_url: str, login: DemoLogin, now: datetime) -> bool:
    """Seed herald's database (DATABASE_URL) once, as the docker-compose stack does at every
    start: the videos written through `data_url`, read through `datasource_url`; the demo's
    schedules send by e-mail only. False, and nothing changed, when the demo tenant exists."""
    with session_scope() as session:
        if session.exec(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)).first() is not None:
            return False
    parse_datasource(datasource_url)  # before anything is written
    write_demo_videos_postgres(data_url, reader=make_url(datasource_url).username)
    with session_scope() as session:
        add_demo_tenant(session, datasource_url, login, now, telegram=False)
    return True


def add_demo_tenant(session: Session, datasource_url: str, login: DemoLogin, now: datetime,
                    telegram: bool) -> None:
    """The demo tenant reading `datasource_url`, the video-performance report, its schedules
    (every minute by e-mail; with `telegram`, every minute to a chat too; daily at 09:00 to
    the tenant's fallback address) and `login` as the tenant's admin."""
    tenant = tenants.add_tenant(session, SEEDER, DEMO_TENANT, "Demo Media", "Europe/Moscow",
                                datasource_url, emails=[TEAM_EMAIL])
    reports.save_report(session, SEEDER, tenant, load_definition(DEMO_REPORT))
    report, add = "video-performance", functools.partial(schedules.save_schedule, session, SEEDER,
                                                         tenant.id, now=now)
    add(schedules.ScheduleValues(report, cron="* * * * *", formats=("pdf", "csv"),
                                 emails=(TEAM_EMAIL,)))
    if telegram:
        add(schedules.ScheduleValues(report, cron="* * * * *", formats=("pdf",),
                                     chats=(TELEGRAM_CHAT,)))
    add(schedules.ScheduleValues(report, cadence="daily", time="09:00",
                                 formats=("pdf", "csv")))  # to the tenant's fallback address
    members.grant(session, SEEDER, tenant.id, login.email, "admin", login.password)


def describe_schedules(session: Session) -> list[str]:
    """One line per schedule of the demo tenant: what it sends, when, to whom, and next when."""
    lines = []
    tenant = tenants.get_tenant(session, SEEDER, DEMO_TENANT)
    for row in schedules.list_schedule_details(session, SEEDER, tenant):
        who = ", ".join(f"{r['channel']} {r['address']}" for r in row["recipients"])
        state = f"next {row['next_run_at']}" if row["active"] else "paused"
        lines.append(f"schedule {row['id']}: {row['report']} {'+'.join(row['formats'])} "
                     f"{row['description']} ({row['timezone']}) to "
                     f"{who or 'the tenant-wide address ' + TEAM_EMAIL}; {state}")
    return lines


def demo_token(directory: Path, now: datetime) -> str:
    """The demo tenant's API token with every scope: the one kept in `directory` while it is
    valid, else a new one (then kept there, readable by this user only)."""
    path = Path(directory) / TOKEN_FILE
    with session_scope(control_url(directory)) as session:
        if path.exists() and tokens.authenticate(session, path.read_text().strip(), now) is not None:
            return path.read_text().strip()
        tenant_id = session.exec(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)).one()
        token = tokens.create_token(session, SEEDER, tenant_id, tokens.SCOPES, name="herald demo",
                                    now=now).token
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return token


def _write_login(path: Path, login: DemoLogin) -> None:
    """Readable by this user only: it may hold the generated password."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump({"email": login.email,
                   "password": None if login.from_environment else login.password}, out)
