"""Data source URLs, and opening a source for one use."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg
from sqlalchemy.engine import URL

from models.errors import InvalidInput
from models.redact import remember_secret
from models.settings import read_database_url
from tenantdb.base import TenantSource
from tenantdb.postgres import libpq_conninfo, open_postgres
from tenantdb.sqlite import open_sqlite

# The data sources herald reads, by URL scheme: each opens a `TenantSource` for one use.
SOURCES: dict[str, Callable[[URL, float], AbstractContextManager[TenantSource]]] = {
    "postgresql": open_postgres,
    "sqlite": lambda url, timeout_s: open_sqlite(url.database, timeout_s),
}
URL_EXAMPLE = "postgresql://reader:password@host/dbname or sqlite:///path/to/file.db"


def parse_datasource(url: str) -> URL:
    """The data source URL, checked: PostgreSQL (through psycopg 3) or a SQLite file. A user
    name or password is percent-decoded once (`p%40ss` is `p@ss`); a refusal never quotes it."""
    scheme, separator, _ = url.strip().partition("://")
    backend = scheme.split("+")[0].lower()  # postgresql+psycopg: postgresql
    backend = "postgresql" if backend == "postgres" else backend
    if not separator or backend not in SOURCES:
        raise InvalidInput(f"The data source is not a PostgreSQL or SQLite URL; write it like {URL_EXAMPLE}.")
    try:
        parsed = read_database_url(url)
    except ValueError as exc:
        raise InvalidInput(f"The data source URL {exc}; write it like {URL_EXAMPLE}.") from None
    if parsed.password:
        remember_secret(str(parsed.password))
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise InvalidInput(f"A SQLite data source must name a file; write it like {URL_EXAMPLE}.")
    if backend == "postgresql" and not parsed.database:
        raise InvalidInput(f"The PostgreSQL data source names no database; write it like {URL_EXAMPLE}.")
    parsed = parsed.set(drivername=backend)
    if backend == "postgresql":
        try:
            libpq_conninfo(parsed)
        except psycopg.ProgrammingError as exc:  # a ?parameter libpq does not know; names only it
            detail = (str(exc).strip().splitlines() or ["?"])[0]
            raise InvalidInput(f"The data source URL has a parameter PostgreSQL does not take "
                               f"({detail}); write it like {URL_EXAMPLE}.") from None
    return parsed


def open_source(url: str, timeout_s: float) -> AbstractContextManager[TenantSource]:
    """The tenant's database, open for one use: one read-only transaction whose statements
    all end within `timeout_s` of its start."""
    parsed = parse_datasource(url)
    return SOURCES[parsed.drivername](parsed, timeout_s)
