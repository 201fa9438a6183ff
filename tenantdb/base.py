"""What every tenant data source offers, and the sentences its refusals are written in.

A `TenantSource` is open for one use (a run's sections, one CSV, one check): one
read-only transaction, exactly one statement per query, and one deadline for all of
them: every statement ends within `timeout_s` of the use's start, whatever the SQL sets.
PostgreSQL and SQLite implement it; `tenantdb.open_source` picks one.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
import math
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO, NamedTuple

import sqlalchemy as sa

from models.definition import bind_names
from models.errors import QueryError

# Text cells a spreadsheet would run as a formula start with one of these (OWASP's list,
# plus LF); herald prefixes them with `'`.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


@dataclass(frozen=True)
class QueryResult:
    """At most `cap` rows of a query, with the number it produced in all."""

    columns: list[str]
    rows: list[list[Any]]
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


class RowStream(NamedTuple):
    """A query's column names and its rows, read from the database as they are consumed."""

    columns: list[str]
    rows: Iterator[Sequence[Any]]


class TenantSource(abc.ABC):
    """A tenant's database, open for one use; every statement is one read-only query, and all
    of them end by `deadline`, `timeout_s` after the use began."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    def remaining(self, where: str) -> float:
        """The seconds the use has left for `where`; QueryError (the timeout's sentence) if none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise QueryError(timed_out(where, self.timeout_s))
        return left

    @abc.abstractmethod
    def query(self, sql: str, params: Mapping[str, Any], *, cap: int, where: str) -> QueryResult:
        """Run one query, keeping the first `cap` rows and counting the rest without holding them."""

    @abc.abstractmethod
    def first_row(self, sql: str, params: Mapping[str, Any], *,
                  where: str) -> tuple[list[str], list[Any] | None]:
        """The query's columns and its first row (None when it returns none), reading no more."""

    @abc.abstractmethod
    def columns(self, sql: str, params: Mapping[str, Any], *, where: str) -> list[str]:
        """The columns one query returns, without reading its rows (a check on save)."""

    @abc.abstractmethod
    def export_csv(self, sql: str, params: Mapping[str, Any], target: BinaryIO, *,
                   neutralise: bool, max_bytes: int, where: str = "csv.sql") -> int:
        """Write the query's rows as CSV with a header to `target`; returns the row count."""

    @abc.abstractmethod
    def stream(self, sql: str, params: Mapping[str, Any], *,
               where: str) -> AbstractContextManager[RowStream]:
        """The query's rows as the driver loads them (numbers, dates, aware timestamps), one at
        a time, for a writer that keeps none of them (XLSX); read them inside the `with`."""


def bound_params(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the `:name` parameters `sql` uses."""
    return {name: params[name] for name in bind_names(sql) if name in params}


def compile_params(sql: str, params: Mapping[str, Any], dialect: sa.Dialect) -> tuple[str, Any]:
    """`:name` parameters in the driver's own placeholder style, still bound by the driver."""
    bound = bound_params(sql, params)
    if dialect.name == "sqlite":
        # SQLite has no timestamp type: an aware datetime (a reporting period) is bound as
        # ISO text with its offset, '2026-11-23 00:00:00-05:00', which SQLite's datetime() reads.
        bound = {name: v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v
                 for name, v in bound.items()}
    compiled = sa.text(sql).bindparams(**bound).compile(dialect=dialect)
    if compiled.positiontup is not None:
        return compiled.string, [compiled.params[name] for name in compiled.positiontup]
    return compiled.string, dict(compiled.params)


def strip_statement(sql: str) -> str:
    """The query without trailing whitespace and semicolons, ready to be wrapped."""
    return sql.strip().rstrip(";").rstrip()


def neutralise(value: str) -> str:
    return "'" + value if value[:1] in FORMULA_STARTS else value


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


def human_size(size: int) -> str:
    """Bytes as people read them: 9.8 KB, 256.0 MB."""
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MB"


# The sentences of the boundary: what went wrong, where, and what to do.

def wrote(where: str, detail: str) -> str:
    return f"{where} tried to change the tenant database ({detail}); report queries may only read."


def several_statements(where: str) -> str:
    return (f"{where} holds more than one SQL statement; a report query must be exactly one "
            f"SELECT, without ';' between statements.")


def not_a_select(where: str, detail: str) -> str:
    return (f"{where} is not a single SELECT the tenant database accepts ({detail}); a report "
            f"query must be exactly one SELECT (WITH … SELECT and VALUES are fine).")


def not_a_query(where: str, keyword: str) -> str:
    article = "an" if keyword[:1] in "AEIOU" else "a"
    return (f"{where} is {article} {keyword} statement, not a query; a report query must be exactly "
            f"one SELECT and may only read.")


def not_permitted(where: str, detail: str) -> str:
    return (f"{where} was refused by the tenant database ({detail}); the data source's role may "
            f"only read, so ask its owner to GRANT SELECT on what the report needs.")


def forbidden(where: str, what: str) -> str:
    return f"{where} tried to {what}, which report queries may not do; a report query is one SELECT."


def timed_out(where: str, timeout_s: float) -> str:
    return (f"{where} ran longer than the {timeout_s:g} s statement timeout; make it faster or "
            f"raise HERALD_QUERY_TIMEOUT_SECONDS.")


def no_rows(where: str) -> str:
    return f"{where} returned no rows; a report query must be a SELECT."


def failed(where: str, detail: str) -> str:
    return f"{where} failed in the tenant database: {detail}."


def csv_too_large(where: str, limit: int, rows: int) -> str:
    return (f"{where} produced more than {human_size(limit)} of CSV (HERALD_CSV_MAX_BYTES) after "
            f"{rows:,} rows; narrow the query or raise the limit.")


def duplicate_column(where: str, name: str) -> str:
    return f"{where} returns two columns named {name!r}; give each column its own name with AS."
