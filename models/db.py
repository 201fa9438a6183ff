"""Engines and sessions: the one place herald connects to its control database."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

from models.redact import redact
from models.settings import get_settings


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite keeps no zone, so values are stored as
    naive UTC and made aware again on the way out. Naive input is refused: herald
    never guesses which zone a bare wall-clock time was in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; herald stores aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RedactedText(TypeDecorator):
    """TEXT whose every written value is `redact()`ed (ORM and Core writes, `bindparam`s
    included): error columns never store a secret."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else redact(value)


def utcnow() -> datetime:
    """The current instant, aware. Only I/O edges call this; scheduling math takes `now`."""
    return datetime.now(UTC)


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process (defaults to `DATABASE_URL`, read now, not at first call)."""
    return _engine_for(url or get_settings().database_url)


@functools.cache
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # Room for every thread of an API process (its thread pool runs 40) without opening and
    # closing overflow connections under load; connections are only opened when needed.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: sa.Connection) -> None:
    # SQLite's single-writer equivalent of FOR UPDATE: a locking transaction
    # (`session_scope(locking=True)`) takes the write lock when it begins, so two ticks
    # cannot both read the same due rows and then both write.
    immediate = connection.get_execution_options().get(LOCK_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


LOCK_OPTION = "herald_lock"


def new_session(url: str | None = None, *, locking: bool = False,
                autocommit: bool = False) -> Session:
    """A session, not yet connected (making one costs no I/O).

    `locking=True` is for transactions that read rows in order to change them (the tick's
    claim, taking deliveries): on SQLite it begins with the write lock held; on PostgreSQL
    the caller locks the rows it reads (`FOR UPDATE`, often `SKIP LOCKED`).
    `autocommit=True` (PostgreSQL; ignored on SQLite) makes every statement commit on its own:
    no BEGIN and COMMIT round trips, for reads on a hot path and single-statement writes.
    """
    engine = get_engine(url)
    if autocommit and engine.dialect.name == "postgresql":
        engine = _autocommit(engine)
    elif locking:
        engine = _locking(engine)
    return Session(engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(url: str | None = None, *, locking: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (`new_session`'s `locking`)."""
    with new_session(url, locking=locking) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextlib.contextmanager
def autocommit_session(url: str | None = None) -> Iterator[Session]:
    """A session whose every statement commits on its own, for a lookup on a hot path (the API's
    token check): on PostgreSQL no BEGIN and COMMIT round trips; on SQLite a locking
    transaction as `session_scope(locking=True)` gives (its write may follow its read)."""
    if get_engine(url).dialect.name != "postgresql":
        with session_scope(url, locking=True) as session:
            yield session
        return
    with new_session(url, autocommit=True) as session:
        yield session


@functools.cache
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@functools.cache
def _locking(engine: Engine) -> Engine:
    return engine.execution_options(**{LOCK_OPTION: True})


def insert_ignoring_conflicts(session: Session, table: sa.Table, *columns: str) -> Any:
    """`INSERT … ON CONFLICT (columns) DO NOTHING` on PostgreSQL and SQLite."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(columns))
