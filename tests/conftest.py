"""Fixtures on real services: a fresh PostgreSQL database per test session, a
migrated SQLite file per test, a private Redis namespace, and the CLI in-process.

With CI=true a missing PostgreSQL or Redis fails the run; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel
from typer.testing import CliRunner

import models.tables  # noqa: F401
from herald.cli import app
from models import migrate
from models.artifacts import forget_local_copies
from models.db import get_engine
from models.settings import get_settings
from pipeline.lifecycle import forget_context

PG_ADMIN_URL = os.environ.get("HERALD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(name: str, error: Exception) -> None:
    message = f"{name} is not reachable ({error}); start it as the README says (PostgreSQL and Redis for the tests)."
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def sqlalchemy_url(libpq_url: str) -> str:
    return libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
    yield PG_ADMIN_URL


@pytest.fixture(scope="session")
def create_pg_database(pg_admin: str) -> Iterator[Callable[[], str]]:
    """A factory of empty PostgreSQL databases with unique names, all dropped at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"herald_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return sqlalchemy_url(pg_admin.rsplit("/", 1)[0] + "/" + name)

    yield create
    # FORCE ends connections still pooled by this process's engines.
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class TenantDatabase:
    """A tenant's PostgreSQL database: `admin_url` fills it, `url` (a role that may only
    read it) is what herald is given as the data source."""

    admin_url: str
    url: str
    role: str
    password: str


@pytest.fixture(scope="session")
def create_tenant_database(pg_admin: str) -> Iterator[Callable[[], TenantDatabase]]:
    """A factory of tenant databases, each with its own SELECT-only login role; tables the
    admin creates later are readable by that role. Databases and roles are dropped at the end."""
    made: list[TenantDatabase] = []
    base = make_url(sqlalchemy_url(pg_admin))

    def create() -> TenantDatabase:
        suffix = uuid.uuid4().hex[:12]
        name, role, password = f"herald_tenant_{suffix}", f"herald_reader_{suffix}", f"pw-{suffix}"
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        admin_url = base.set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(admin_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
            conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"')
        url = base.set(database=name, username=role, password=password).render_as_string(hide_password=False)
        made.append(TenantDatabase(admin_url=admin_url, url=url, role=role, password=password))
        return made[-1]

    yield create
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        for db in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{make_url(db.url).database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{db.role}"')


@pytest.fixture(scope="session")
def pg_url(create_pg_database: Callable[[], str]) -> str:
    """herald's schema, migrated once per test session on a fresh PostgreSQL database."""
    url = create_pg_database()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    get_engine(f"sqlite:///{path}").dispose()
    return path


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty, migrated control database on each backend; DATABASE_URL points at it."""
    if request.param == "sqlite":
        path = tmp_path / "herald.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        _truncate_all(url)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    forget_context()  # ids start over in each test's database: what the log lines name too,
    forget_local_copies()  # and the shared documents a worker keeps
    yield url
    get_settings.cache_clear()
    if request.param == "sqlite":
        get_engine(url).dispose()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with Session(get_engine(db_url), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def cli(db_url: str) -> Callable[..., object]:
    """Run `herald ARGS...` in-process against the test database; returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        get_settings.cache_clear()
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    yield client
    client.close()


@pytest.fixture
def redis_namespace(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private key prefix (HERALD_REDIS_NAMESPACE); its keys are deleted afterwards."""
    namespace = f"herald-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("HERALD_REDIS_NAMESPACE", namespace)
    get_settings.cache_clear()
    yield namespace
    keys = list(redis_client.scan_iter(f"{namespace}*"))
    if keys:
        redis_client.delete(*keys)
    get_settings.cache_clear()


@pytest.fixture
def redis_broker(redis_namespace: str):
    """herald's Redis broker, built from the settings under the private namespace and installed
    as Dramatiq's broker for the test (the previous one is put back)."""
    import dramatiq

    from jobs.broker import build_broker

    previous = dramatiq.get_broker()
    broker = build_broker(get_settings())
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)
    broker.close()
