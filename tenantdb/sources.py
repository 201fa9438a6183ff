"""Data source URLs, and opening a source for one use."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from models.errors import InvalidInput
from models.redact import remember_secret
from tenantdb.base import TenantSource
from tenantdb.postgres import open_postgres
from tenantdb.sqlite import open_sqlite

# The data sources herald reads, by URL scheme: each opens a `TenantSource` for one use.
SOURCES: dict[str, Callable[[URL, float], AbstractContextManager[TenantSource]]] = {
    "postgresql": open_postgres,
    "sqlite": lambda url, timeout_s: open_sqlite(url.database, timeout_s),
}
URL_EXAMPLE = "postgresql://reader:password@host/dbname or sqlite:///path/to/file.db"


def parse_datasource(url: str) -> URL:
    """The data source URL, checked: PostgreSQL (through psycopg 3) or a SQLite file."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError, AttributeError):
        parsed = None
    backend = parsed.get_backend_name() if parsed is not None else None
    if backend == "postgres":
        backend = "postgresql"
    if backend not in SOURCES:
        raise InvalidInput(f"The data source is not a PostgreSQL or SQLite URL; write it like {URL_EXAMPLE}.")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise InvalidInput(f"A SQLite data source must name a file; write it like {URL_EXAMPLE}.")
    if backend == "postgresql" and not parsed.database:
        raise InvalidInput(f"The PostgreSQL data source names no database; write it like {URL_EXAMPLE}.")
    if parsed.password:
        remember_secret(str(parsed.password))
    return parsed.set(drivername=backend)


def open_source(url: str, timeout_s: float) -> AbstractContextManager[TenantSource]:
    """The tenant's database, open for one use: one read-only transaction, statements timed."""
    parsed = parse_datasource(url)
    return SOURCES[parsed.drivername](parsed, timeout_s)
