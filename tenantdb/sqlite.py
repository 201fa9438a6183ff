"""A SQLite data source: the file opened read-only, an authorizer that allows reads only.

- The file is opened with `mode=ro`: SQLite itself refuses to write it. A new
  connection serves each use, so nothing one report does (a PRAGMA, an ATTACH) can
  outlive it; there is no pool to poison.
- The authorizer, consulted by SQLite as it compiles each statement, allows
  SELECT, reading tables, recursive CTEs and functions, and denies everything
  else: writes, ATTACH/DETACH (and VACUUM INTO, which attaches), every PRAGMA,
  transactions, and the functions that load code or touch files.
- Python's sqlite3 compiles exactly one statement and refuses a second.
- A progress handler stops a query once the use's deadline passes, fetching included;
  a statement begun after it is refused before it runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from sqlalchemy.dialects import sqlite as sqlite_dialect

from models.errors import DataSourceUnreachable, QueryError
from tenantdb import base
from tenantdb.base import QueryResult, RowStream, TenantSource

_DIALECT = sqlite_dialect.pysqlite.dialect()
ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                             sqlite3.SQLITE_RECURSIVE})
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_WRITES = {sqlite3.SQLITE_INSERT: "insert into {0}", sqlite3.SQLITE_UPDATE: "update {0}",
           sqlite3.SQLITE_DELETE: "delete from {0}", sqlite3.SQLITE_DROP_TABLE: "drop table {0}",
           sqlite3.SQLITE_CREATE_TABLE: "create table {0}", sqlite3.SQLITE_ALTER_TABLE: "alter table {1}"}
_OTHERS = {sqlite3.SQLITE_ATTACH: "attach a database file", sqlite3.SQLITE_DETACH: "detach a database",
           sqlite3.SQLITE_PRAGMA: "set or read PRAGMA {0}", sqlite3.SQLITE_TRANSACTION: "control the transaction",
           sqlite3.SQLITE_FUNCTION: "call {1}()"}
PROGRESS_STEPS = 10_000
CSV_BATCH = 2000


class SqliteSource(TenantSource):
    def __init__(self, conn: sqlite3.Connection, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.conn = conn
        self.denied: str | None = None  # what the authorizer last refused, for the error
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(lambda: int(time.monotonic() > self.deadline), PROGRESS_STEPS)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None,
                   _trigger: str | None) -> int:
        if action in ALLOWED_ACTIONS and not (action == sqlite3.SQLITE_FUNCTION
                                              and (arg2 or "").lower() in DENIED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        if action in _WRITES:
            self.denied = "write:" + _WRITES[action].format(arg1, arg2)
        else:
            self.denied = _OTHERS.get(action, "run a statement other than SELECT").format(arg1, arg2)
        return sqlite3.SQLITE_DENY

    @contextlib.contextmanager
    def _statement(self, sql: str, params: Mapping[str, Any], where: str) -> Iterator[sqlite3.Cursor]:
        """One statement's cursor, stopped at the use's deadline, its rows' reading included."""
        self.remaining(where)
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        self.denied = None
        try:
            cursor = self.conn.execute(text, values)
            if cursor.description is None:
                raise QueryError(base.no_rows(where))
            yield cursor
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise QueryError(self._describe_failure(exc, where)) from None

    def _describe_failure(self, exc: Exception, where: str) -> str:
        text = str(exc).strip() or type(exc).__name__
        if self.denied and "authoriz" in text:
            kind, _, what = self.denied.partition(":")
            return base.wrote(where, what) if kind == "write" else base.forbidden(where, self.denied)
        if "one statement at a time" in text:
            return base.several_statements(where)
        if text == "interrupted":
            return base.timed_out(where, self.timeout_s)
        if "readonly" in text:
            return base.wrote(where, text)
        if "syntax error" in text or "incomplete input" in text:
            return base.not_a_select(where, text)
        return base.failed(where, text)

    def query(self, sql: str, params: Mapping[str, Any], *, cap: int, where: str) -> QueryResult:
        with self._statement(sql, params, where) as cursor:
            columns = [d[0] for d in cursor.description]
            rows = [[base.jsonable(v) for v in row] for row in cursor.fetchmany(cap)] if cap else []
            total = len(rows) + sum(1 for _ in cursor)
        return QueryResult(columns=columns, rows=rows, total=total)

    def first_row(self, sql: str, params: Mapping[str, Any], *,
                  where: str) -> tuple[list[str], list[Any] | None]:
        with self._statement(sql, params, where) as cursor:
            row = cursor.fetchone()
            return [d[0] for d in cursor.description], None if row is None else list(row)

    def columns(self, sql: str, params: Mapping[str, Any], *, where: str) -> list[str]:
        with self._statement(sql, params, where) as cursor:
            return [d[0] for d in cursor.description]

    @contextlib.contextmanager
    def stream(self, sql: str, params: Mapping[str, Any], *, where: str) -> Iterator[RowStream]:
        with self._statement(sql, params, where) as cursor:
            yield RowStream([d[0] for d in cursor.description], cursor)

    def export_csv(self, sql: str, params: Mapping[str, Any], target: BinaryIO, *,
                   neutralise: bool, max_bytes: int, where: str = "csv.sql") -> int:
        limited = _LimitedWriter(target, max_bytes)
        text = io.TextIOWrapper(limited, encoding="utf-8", newline="", write_through=True)
        rows = 0
        try:
            # RFC 4180 line ends: csv.writer quotes a field holding CR or LF.
            writer = csv.writer(text, lineterminator="\r\n")
            with self._statement(sql, params, where) as cursor:
                writer.writerow([d[0] for d in cursor.description])
                while batch := cursor.fetchmany(CSV_BATCH):
                    writer.writerows([_cell(v, neutralise) for v in row] for row in batch)
                    rows += len(batch)
            return rows
        except _LimitReached:
            raise QueryError(base.csv_too_large(where, max_bytes, rows)) from None
        finally:
            text.detach()


class _LimitReached(Exception):
    """Raised by `_LimitedWriter` instead of writing past its limit."""


class _LimitedWriter(io.RawIOBase):
    """Passes bytes on to `target` until `limit` bytes are written, then refuses."""

    def __init__(self, target: BinaryIO, limit: int) -> None:
        self.target, self.limit, self.written = target, limit, 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self.limit:
            raise _LimitReached
        self.written += len(data)
        self.target.write(data)
        return len(data)


def _cell(value: Any, neutralise: bool) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return base.neutralise(value) if neutralise else value
    if isinstance(value, bytes):
        return "\\x" + value.hex()  # as PostgreSQL's COPY writes bytea
    return value


@contextlib.contextmanager
def open_sqlite(path: str, timeout_s: float) -> Iterator[SqliteSource]:
    """The file, read-only, on a connection of its own that is closed afterwards."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise DataSourceUnreachable(
            f"The SQLite data source {file} does not exist; check the path in the tenant's data source URL.")
    try:
        conn = sqlite3.connect(f"file:{quote(str(file))}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise DataSourceUnreachable(f"Cannot open the SQLite data source {file} ({exc}).") from None
    try:
        yield SqliteSource(conn, timeout_s)
    finally:
        conn.close()
