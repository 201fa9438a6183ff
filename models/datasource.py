"""Running a report's SQL against its tenant's own database: read-only, time-limited.

Writes are refused by the database itself (a read-only transaction on
PostgreSQL, `query_only` on SQLite), not by parsing SQL.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from models.definition import bind_names
from models.errors import QueryError

READ_ONLY_SQLSTATE = "25006"
QUERY_CANCELED_SQLSTATE = "57014"
# What DECLARE ... CURSOR says of a statement it cannot wrap: a syntax error, or a
# data-modifying WITH (feature not supported).
NOT_A_CURSOR_QUERY = {"42601", "0A000"}


@dataclass(frozen=True)
class QueryResult:
    """At most `cap` rows of a query, with the number it produced in all."""

    columns: list[str]
    rows: list[list[Any]]
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


@functools.cache
def tenant_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_query_only)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)


def _sqlite_query_only(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")


@contextlib.contextmanager
def read_only(url: str, timeout_s: float) -> Iterator[Connection]:
    """A connection in a read-only transaction whose statements stop after `timeout_s`."""
    with tenant_engine(url).connect() as conn:
        dialect = conn.dialect.name
        with conn.begin():
            if dialect == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            elif dialect == "sqlite":
                deadline = time.monotonic() + timeout_s
                raw = conn.connection.dbapi_connection
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            elif dialect in ("mysql", "mariadb"):
                conn.exec_driver_sql(f"SET SESSION max_execution_time = {int(timeout_s * 1000)}")
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                if dialect == "sqlite":
                    conn.connection.dbapi_connection.set_progress_handler(None, 0)
                conn.rollback()


def jsonable(value: Any) -> Any:
    """A cell as JSON: numbers stay numbers, times become ISO 8601 text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def run_query(conn: Connection, sql: str, params: Mapping[str, Any], cap: int,
              where: str, timeout_s: float) -> QueryResult:
    """Run one query, keeping the first `cap` rows and counting the rest without holding them."""
    bound = {name: params[name] for name in bind_names(sql) if name in params}
    statement = sa.text(sql)
    # Per statement: Connection.execution_options() would change the connection in place.
    streamed = statement.execution_options(stream_results=True)
    try:
        if conn.dialect.name != "postgresql":
            return _collect(conn.execute(streamed, bound), cap, where)
        try:
            with conn.begin_nested():  # a server-side cursor: rows arrive as they are read
                return _collect(conn.execute(streamed, bound), cap, where)
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in NOT_A_CURSOR_QUERY:
                raise
        # DECLARE ... CURSOR accepts only plain queries. Run anything else plainly, so that the
        # read-only transaction, not a syntax error, is what refuses a write.
        with conn.begin_nested():
            return _collect(conn.execute(statement, bound), cap, where)
    except sa.exc.DBAPIError as exc:
        raise QueryError(describe_failure(exc, where, timeout_s)) from None


def _collect(result: sa.CursorResult, cap: int, where: str) -> QueryResult:
    if not result.returns_rows:
        raise QueryError(f"{where} returned no rows; a report query must be a SELECT.")
    columns = list(result.keys())
    rows, total = [], 0
    for row in result:
        total += 1
        if len(rows) < cap:
            rows.append([jsonable(v) for v in row])
    return QueryResult(columns=columns, rows=rows, total=total)


def describe_failure(exc: sa.exc.DBAPIError, where: str, timeout_s: float) -> str:
    """One sentence for a database error; the tenant URL never appears in it."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    text = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    if sqlstate == READ_ONLY_SQLSTATE or "readonly" in text.lower() or "read-only" in text.lower():
        return (f"{where} tried to change the tenant database ({text}); "
                f"report queries may only read.")
    if sqlstate == QUERY_CANCELED_SQLSTATE or text == "interrupted":
        return (f"{where} ran longer than the {timeout_s:g} s statement timeout; "
                f"make it faster or raise HERALD_QUERY_TIMEOUT_SECONDS.")
    return f"{where} failed in the tenant database: {text}."
