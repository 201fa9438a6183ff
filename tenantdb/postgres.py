"""A PostgreSQL data source: one statement, read-only, all of a use's statements ended by
one deadline.

- Every statement goes over the extended query protocol, which runs exactly one
  statement: the server refuses `SELECT 1; DELETE …` ("cannot insert multiple
  commands into a prepared statement"). psycopg would use the simple protocol for
  a statement without parameters and for every COPY; `_OneStatementCursor` stops it.
- Report SQL is run as a subquery (`SELECT * FROM (<sql>) AS q`, `COPY (…) TO
  STDOUT`), so the server's parser refuses anything that is not a query: SET, DO,
  CALL, LOCK, COPY TO PROGRAM and data-modifying WITH.
- Sessions start with `default_transaction_read_only=on`; each use is one
  REPEATABLE READ READ ONLY transaction whose first statement takes the snapshot
  (so it cannot be switched to read-write).
- A use has `timeout_s` in all, from its transaction's start, whatever its SQL sets:
  herald's own timer cancels the backend at the deadline (and the connection is then
  closed, not pooled, so a late cancel cannot hit its next use); before each statement
  the server's `statement_timeout` (and on PostgreSQL 17+ `transaction_timeout`) is set
  again to the time left, so a `set_config` in one statement cannot lift it for the
  next; a statement begun after the deadline is refused. Rows are streamed from one
  statement, so the deadline bounds fetching too.
- The role must not be a superuser or hold pg_execute_server_program,
  pg_read_server_files or pg_write_server_files: checked at every use.
- A connection goes back to the pool rolled back and `DISCARD ALL`ed (session
  settings, advisory locks, prepared statements gone); one that fails that is closed.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from sqlalchemy import pool
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL

from models.errors import DataSourceUnreachable, QueryError
from tenantdb import base
from tenantdb.base import QueryResult, RowStream, TenantSource

READ_ONLY_SQLSTATE = "25006"
READ_WRITE_TOO_LATE_SQLSTATE = "25001"  # "transaction read-write mode must be set before any query"
QUERY_CANCELED_SQLSTATE = "57014"
TRANSACTION_TIMEOUT_SQLSTATE = "25P04"  # PostgreSQL 17+: the server ended the session at transaction_timeout
TRANSACTION_TIMEOUT_SINCE = 170000  # the server_version with transaction_timeout
CANCEL_TIMEOUT_SECONDS = 5.0
SYNTAX_ERROR_SQLSTATE = "42601"
INSUFFICIENT_PRIVILEGE_SQLSTATE = "42501"
SEVERAL_STATEMENTS = "cannot insert multiple commands"
DANGEROUS_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
STREAM_ROWS = 2000 if psycopg.capabilities.has_stream_chunked() else 1
# The types whose text a spreadsheet could read as a formula are neutralised: every type
# category but numbers, dates, booleans, intervals, bit strings, geometry, network
# addresses, arrays, composites and ranges (none of whose text starts with = + - @ …
# except numbers, which must stay numbers). Text (S), enums (E), json, xml, citext…
SAFE_CATEGORIES = frozenset("NDBTVGIACR")
# text, varchar, bpchar, name, "char": compared without a cast.
TEXT_TYPE_OIDS = frozenset({25, 1043, 1042, 19, 18})
FORMULA_CODES_SQL = ", ".join(str(ord(c)) for c in base.FORMULA_STARTS)
FORMULA_MAX_CODE = max(map(ord, base.FORMULA_STARTS))
_DIALECT = postgresql.psycopg.dialect()

_SESSION_CHECK = """
SELECT current_user, r.rolsuper,
       array(SELECT p FROM unnest(%(roles)s::text[]) AS p WHERE pg_has_role(current_user, p, 'MEMBER')),
       {limits}
FROM pg_roles AS r WHERE r.rolname = current_user
"""


class _OneStatementCursor(psycopg.Cursor):
    """A cursor that sends everything over the extended protocol, COPY included."""

    def _execute_send(self, query: Any, *, force_extended: bool = False, binary: bool | None = None) -> None:
        super()._execute_send(query, force_extended=True, binary=binary)


def role_advice(role: str, database: str) -> str:
    return (f"give herald a role that can only read, e.g. CREATE ROLE herald_reader LOGIN PASSWORD "
            f"'…'; GRANT CONNECT ON DATABASE {database} TO herald_reader; GRANT USAGE ON SCHEMA public "
            f"TO herald_reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO herald_reader")


class _Pools:
    """One small pool per data source, for the most recently used `size` data sources: a
    worker keeps at most one idle connection to each, and none to a tenant it no longer serves."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pools: OrderedDict[str, pool.QueuePool] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, conninfo: str) -> pool.QueuePool:
        with self._lock:
            found = self._pools.pop(conninfo, None) or _new_pool(conninfo)
            self._pools[conninfo] = found
            while len(self._pools) > self.size:
                _, evicted = self._pools.popitem(last=False)
                evicted.dispose()
            return found


def libpq_conninfo(url: URL) -> str:
    """The URL as libpq's key=value string: SQLAlchemy has percent-decoded each part once, psycopg
    quotes it, so a password may hold a space, an @ or a quote. psycopg.ProgrammingError for a
    ?parameter libpq does not take."""
    parts = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
             "dbname": url.database}
    parts.update({key: ",".join(value) if isinstance(value, tuple) else value
                  for key, value in url.query.items()})
    return make_conninfo(**{key: value for key, value in parts.items() if value is not None})


def _new_pool(conninfo: str) -> pool.QueuePool:
    def connect() -> psycopg.Connection:
        return psycopg.connect(conninfo, autocommit=True, cursor_factory=_OneStatementCursor,
                               options="-c default_transaction_read_only=on", connect_timeout=10,
                               prepare_threshold=None,  # DISCARD ALL drops prepared statements
                               application_name="herald")

    return pool.QueuePool(connect, pool_size=1, max_overflow=8, reset_on_return=None)


_pool = _Pools(size=32)


class PostgresSource(TenantSource):
    def __init__(self, conn: psycopg.Connection, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.conn = conn

    def _arm(self, where: str) -> None:
        """Set the server's own limits to the time the use has left, before a statement: an
        earlier statement may have switched them off."""
        self.conn.execute(f"SELECT {_limits(self.conn)}", {"limit": _whole_seconds(self.remaining(where))})

    def _fail(self, exc: psycopg.Error, where: str, text: str = "", values: Any = None) -> QueryError:
        if time.monotonic() >= self.deadline:  # herald's timer cancelled it, or the server's limits
            return QueryError(base.timed_out(where, self.timeout_s))
        if getattr(exc, "sqlstate", None) == SYNTAX_ERROR_SQLSTATE and text:
            return QueryError(self._diagnose(exc, where, text, values))
        return QueryError(describe_failure(exc, where, self.timeout_s))

    def _diagnose(self, exc: psycopg.Error, where: str, text: str, values: Any) -> str:
        """Why the wrapped query did not parse: several statements, a statement that is not a
        query, or a plain syntax error.

        The server parses the SQL alone (an unnamed prepared statement, never executed);
        then the transaction is begun again as it was, for whatever the caller runs next.
        """
        self.conn.execute("ROLLBACK")
        try:
            bare = psycopg.ClientCursor(self.conn).mogrify(text, values)
            error = (self.conn.pgconn.prepare(b"", bare.encode()).error_message or b"").decode(errors="replace")
        finally:
            begin(self.conn, _whole_seconds(self.remaining(where)))
        if SEVERAL_STATEMENTS in error:
            return base.several_statements(where)
        if not error:
            return base.not_a_query(where, _first_word(text))
        return describe_failure(exc, where, self.timeout_s)

    def query(self, sql: str, params: Mapping[str, Any], *, cap: int, where: str) -> QueryResult:
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        wrapped = f"SELECT * FROM (\n{text}\n) AS herald_query"
        cur = self.conn.cursor()
        rows: list[list[Any]] = []
        total = 0
        try:
            self._arm(where)
            for row in cur.stream(wrapped, values, size=STREAM_ROWS):
                total += 1
                if len(rows) < cap:
                    rows.append([base.jsonable(v) for v in row])
            if cur.description is None:  # no rows: ask for the columns alone
                self._arm(where)
                cur.execute(wrapped + " LIMIT 0", values)
        except psycopg.Error as exc:
            raise self._fail(exc, where, text, values) from None
        return QueryResult(columns=[c.name for c in cur.description], rows=rows, total=total)

    def first_row(self, sql: str, params: Mapping[str, Any], *,
                  where: str) -> tuple[list[str], list[Any] | None]:
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        cur = self.conn.cursor()
        try:
            self._arm(where)
            cur.execute(f"SELECT * FROM (\n{text}\n) AS herald_query LIMIT 1", values)
            row = cur.fetchone()
        except psycopg.Error as exc:
            raise self._fail(exc, where, text, values) from None
        return [c.name for c in cur.description], None if row is None else list(row)

    def columns(self, sql: str, params: Mapping[str, Any], *, where: str) -> list[str]:
        return [name for name, _ in self._describe(sql, params, where)]

    def _describe(self, sql: str, params: Mapping[str, Any], where: str) -> list[tuple[str, int]]:
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        cur = self.conn.cursor()
        try:
            self._arm(where)
            cur.execute(f"SELECT * FROM (\n{text}\n) AS herald_query LIMIT 0", values)
        except psycopg.Error as exc:
            raise self._fail(exc, where, text, values) from None
        return [(c.name, c.type_code) for c in cur.description]

    def export_csv(self, sql: str, params: Mapping[str, Any], target: BinaryIO, *,
                   neutralise: bool, max_bytes: int, where: str = "csv.sql") -> int:
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        query = f"SELECT * FROM (\n{text}\n) AS q"
        if neutralise:
            query = self._neutralising(text, self._describe(sql, params, where), where)
        cur = self.conn.cursor()
        written = rows = 0
        try:
            self._arm(where)
            # psycopg merges the values into COPY client-side, as literals; the result still
            # goes over the extended protocol, as one statement.
            with cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", values) as copy:
                for chunk in copy:  # one row per chunk, the header first
                    written += len(chunk)
                    if written > max_bytes:
                        raise QueryError(base.csv_too_large(where, max_bytes, max(rows - 1, 0)))
                    target.write(chunk)
                    rows += 1
        except psycopg.Error as exc:
            raise self._fail(exc, where, text, values) from None
        return cur.rowcount

    @contextlib.contextmanager
    def stream(self, sql: str, params: Mapping[str, Any], *, where: str) -> Iterator[RowStream]:
        columns = self.columns(sql, params, where=where)
        text, values = base.compile_params(base.strip_statement(sql), params, _DIALECT)
        try:
            self._arm(where)
        except psycopg.Error as exc:
            raise self._fail(exc, where) from None
        rows = self.conn.cursor().stream(f"SELECT * FROM (\n{text}\n) AS herald_query", values,
                                         size=STREAM_ROWS)
        try:
            yield RowStream(columns, rows)
        except psycopg.Error as exc:
            raise self._fail(exc, where, text, values) from None
        finally:
            rows.close()  # a stream left unread is cancelled before the connection is reset

    def _neutralising(self, text: str, columns: list[tuple[str, int]], where: str) -> str:
        """The query with every text-like cell that starts like a formula prefixed with `'`."""
        names = [name for name, _ in columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise QueryError(base.duplicate_column(where, duplicates[0]))
        try:
            self._arm(where)
            categories = dict(self.conn.execute(
                "SELECT oid::int, typcategory FROM pg_type WHERE oid = ANY(%s)",
                [sorted({oid for _, oid in columns})]).fetchall())
        except psycopg.Error as exc:
            raise self._fail(exc, where) from None
        selected = []
        for name, oid in columns:
            column = f"q.{_quote(name)}"
            if categories.get(oid, "X") in SAFE_CATEGORIES:
                selected.append(column)
                continue
            as_text = column if oid in TEXT_TYPE_OIDS else f"{column}::text"
            selected.append(f"CASE WHEN ascii({as_text}) <= {FORMULA_MAX_CODE} "
                            f"AND ascii({as_text}) IN ({FORMULA_CODES_SQL}) THEN '''' || {as_text} "
                            f"ELSE {as_text} END AS {_quote(name)}")
        return f"SELECT {', '.join(selected)} FROM (\n{text}\n) AS q"


def _first_word(sql: str) -> str:
    """The statement's keyword, for the message only (the server already refused it)."""
    code = "\n".join(line.split("--")[0] for line in sql.splitlines())
    return (code.split() or ["?"])[0].upper()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def describe_failure(exc: psycopg.Error, where: str, timeout_s: float) -> str:
    """One sentence for a database error; the data source's URL never appears in it."""
    sqlstate = getattr(exc, "sqlstate", None)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if sqlstate in (READ_ONLY_SQLSTATE, READ_WRITE_TOO_LATE_SQLSTATE) or "data-modifying" in text:
        return base.wrote(where, text)
    if sqlstate in (QUERY_CANCELED_SQLSTATE, TRANSACTION_TIMEOUT_SQLSTATE):
        return base.timed_out(where, timeout_s)
    if sqlstate == SYNTAX_ERROR_SQLSTATE:
        return base.several_statements(where) if SEVERAL_STATEMENTS in text else base.not_a_select(where, text)
    if sqlstate == INSUFFICIENT_PRIVILEGE_SQLSTATE:
        return base.not_permitted(where, text)
    return base.failed(where, text)


@contextlib.contextmanager
def open_postgres(url: URL, timeout_s: float) -> Iterator[PostgresSource]:
    """A pooled connection in a fresh read-only transaction, checked, cancelled at the use's
    deadline, and reset afterwards; one the timer cancelled on is closed instead."""
    fairy, conn, (role, superuser, dangerous) = _checkout(libpq_conninfo(url), url, timeout_s)
    source = PostgresSource(conn, timeout_s)
    timer = _DeadlineTimer(conn, source.deadline)
    try:
        if superuser or dangerous:
            what = "is a superuser" if superuser else f"is a member of {', '.join(dangerous)}"
            raise QueryError(
                f"The data source's role {role!r} {what}, which can run programs or read and write "
                f"files on the database server; {role_advice(role, url.database)}.")
        yield source
    finally:
        # A cancel may reach the server after the statement it was meant for: the connection
        # it was sent on never serves another use.
        if timer.stop() or not _reset(conn):
            fairy.invalidate()
        fairy.close()


class _DeadlineTimer:
    """Cancels what the connection runs when the deadline passes: herald's own limit, which
    no setting the SQL changes can lift. One thread per use, ended by `stop()`."""

    def __init__(self, conn: psycopg.Connection, deadline: float) -> None:
        self.fired = threading.Event()
        self._thread = threading.Timer(max(deadline - time.monotonic(), 0), self._cancel, [conn])
        self._thread.name, self._thread.daemon = "herald-query-deadline", True
        self._thread.start()

    def _cancel(self, conn: psycopg.Connection) -> None:
        self.fired.set()
        with contextlib.suppress(psycopg.Error):
            conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)

    def stop(self) -> bool:
        """End the timer, waiting for a cancel under way to be sent; whether it fired."""
        self._thread.cancel()
        self._thread.join()
        return self.fired.is_set()


def _checkout(conninfo: str, url: URL, timeout_s: float) -> tuple[Any, psycopg.Connection, tuple]:
    """A connection with its transaction begun. A pooled connection the server has since
    closed (a restart, an idle timeout) is replaced once by a new one."""
    failure: psycopg.OperationalError | None = None
    for _ in range(2):
        try:
            fairy = _pool(conninfo).connect()
        except psycopg.OperationalError as exc:
            raise DataSourceUnreachable(
                f"Cannot connect to the data source at {url.host or 'localhost'}"
                f"{':' + str(url.port) if url.port else ''}/{url.database} ({_first_line(exc)}); "
                f"check that it is up and that the URL's user and password are right.") from None
        conn: psycopg.Connection = fairy.dbapi_connection
        try:
            return fairy, conn, begin(conn, _whole_seconds(timeout_s))
        except psycopg.OperationalError as exc:
            fairy.invalidate()
            fairy.close()
            failure = exc
    raise DataSourceUnreachable(f"The data source's connection failed ({_first_line(failure)}).")


def begin(conn: psycopg.Connection, limit: str) -> tuple[str, bool, list[str]]:
    """Start the read-only transaction, its snapshot and the server's limits (`limit`, e.g.
    '60s'); returns the role, whether it is a superuser, and the dangerous roles it belongs to."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    role, superuser, dangerous, *_ = conn.execute(
        _SESSION_CHECK.format(limits=_limits(conn)),
        {"roles": list(DANGEROUS_ROLES), "limit": limit}).fetchone()
    return role, superuser, dangerous


def _limits(conn: psycopg.Connection) -> str:
    """The select list that sets the server's own limits to %(limit)s for the transaction: its
    statement timeout, and from PostgreSQL 17 its transaction timeout too."""
    limits = "set_config('statement_timeout', %(limit)s, true)"
    if conn.info.server_version >= TRANSACTION_TIMEOUT_SINCE:
        limits += ", set_config('transaction_timeout', %(limit)s, true)"
    return limits


def _whole_seconds(seconds: float) -> str:
    """A limit for the server, rounded up to whole seconds: herald's timer is the exact one."""
    return f"{max(math.ceil(seconds), 1)}s"


def _reset(conn: psycopg.Connection) -> bool:
    """Roll back and forget the session's state; False when the connection cannot be reused."""
    try:
        conn.execute("ROLLBACK")
        conn.execute("DISCARD ALL")
        return conn.info.transaction_status == pq.TransactionStatus.IDLE
    except psycopg.Error:
        return False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
