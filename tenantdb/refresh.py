"""Refreshing a report's materialized views before its queries (`refresh:` in the report).

This is the one write herald makes to a tenant's database, so it goes through a separate
data source the tenant granted for it (`herald tenant grant-refresh`), never through the
read-only one the queries use:

- only `REFRESH MATERIALIZED VIEW` of the names the report lists, quoted as identifiers;
- all of them in one transaction of their own, committed before the queries begin, so
  the queries' snapshot sees the refreshed rows, and a failure leaves every view as it was;
- under a statement timeout (HERALD_REFRESH_TIMEOUT_SECONDS);
- as a role that is not a superuser and cannot run programs or touch server files.

PostgreSQL refreshes a materialized view for its owner only, so the granted role is
usually the views' owner.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from models.errors import DataSourceUnreachable, InvalidInput, QueryError
from tenantdb.postgres import (
    DANGEROUS_ROLES,
    INSUFFICIENT_PRIVILEGE_SQLSTATE,
    QUERY_CANCELED_SQLSTATE,
    libpq_conninfo,
)
from tenantdb.sources import parse_datasource

_ROLE_CHECK = """
SELECT set_config('statement_timeout', %s, true), current_user, r.rolsuper,
       array(SELECT p FROM unnest(%s::text[]) AS p WHERE pg_has_role(current_user, p, 'MEMBER'))
FROM pg_roles AS r WHERE r.rolname = current_user
"""
CHECK_TIMEOUT_SECONDS = 10.0


def refresh_views(url: str, names: Sequence[str], timeout_s: float) -> None:
    """Refresh each view in `names`, in order, in one transaction; QueryError in one sentence."""
    with _connect(url) as conn, conn.transaction():
        _check_role(conn, timeout_s)
        for name in names:
            try:
                conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(
                    sql.Identifier(*name.split("."))))
            except psycopg.Error as exc:
                raise QueryError(_failure(exc, name, timeout_s)) from None


def check_refresh_source(url: str) -> str:
    """A refresh data source, checked once on grant: PostgreSQL, reachable, a safe role."""
    parsed = parse_datasource(url)
    if parsed.drivername != "postgresql":
        raise InvalidInput("Only a PostgreSQL data source has materialized views to refresh; "
                           "grant a postgresql:// URL.")
    try:
        with _connect(url) as conn, conn.transaction():
            _check_role(conn, CHECK_TIMEOUT_SECONDS)
    except (QueryError, DataSourceUnreachable) as exc:
        raise InvalidInput(str(exc)) from None
    return url


def _connect(url: str) -> psycopg.Connection:
    parsed = parse_datasource(url)
    if parsed.drivername != "postgresql":
        raise QueryError("The refresh data source is not PostgreSQL; only PostgreSQL has "
                         "materialized views to refresh.")
    try:
        return psycopg.connect(libpq_conninfo(parsed), connect_timeout=10, application_name="herald-refresh")
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataSourceUnreachable(
            f"Cannot connect to the refresh data source at {parsed.host or 'localhost'}/"
            f"{parsed.database} ({first}); check that it is up and that the URL's user and "
            f"password are right.") from None


def _check_role(conn: psycopg.Connection, timeout_s: float) -> None:
    _, role, superuser, dangerous = conn.execute(
        _ROLE_CHECK, [str(int(timeout_s * 1000)), list(DANGEROUS_ROLES)]).fetchone()
    if superuser or dangerous:
        what = "is a superuser" if superuser else f"is a member of {', '.join(dangerous)}"
        raise QueryError(f"The refresh data source's role {role!r} {what}; grant a role that owns "
                         f"the report's materialized views and nothing more.")


def _failure(exc: psycopg.Error, name: str, timeout_s: float) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if sqlstate == QUERY_CANCELED_SQLSTATE:
        return (f"Refreshing {name} ran longer than the {timeout_s:g} s timeout; raise "
                f"HERALD_REFRESH_TIMEOUT_SECONDS or make the view cheaper. No view was refreshed.")
    if sqlstate == INSUFFICIENT_PRIVILEGE_SQLSTATE:
        return (f"The refresh data source's role may not refresh {name} ({text}); make that role "
                f"the view's owner (ALTER MATERIALIZED VIEW {name} OWNER TO …). No view was refreshed.")
    return f"Refreshing {name} failed in the tenant database: {text}. No view was refreshed."
