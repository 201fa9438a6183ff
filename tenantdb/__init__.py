"""The one way into a tenant's database.

Every use of a tenant's data source (the query stage, the CSV export, checks when
a report is saved, previews) goes through `open_source`: one read-only transaction
in which each report query is exactly one SELECT, refused by the database itself when
it is anything else, and all of them end within one timeout from the transaction's
start, which herald enforces itself. PostgreSQL and SQLite are supported.
"""

from __future__ import annotations

from tenantdb.base import FORMULA_STARTS, QueryResult, TenantSource, jsonable, neutralise
from tenantdb.checks import check_columns, check_datasource, check_report
from tenantdb.postgres import libpq_conninfo
from tenantdb.sources import SOURCES, open_source, parse_datasource

__all__ = ["FORMULA_STARTS", "QueryResult", "SOURCES", "TenantSource", "check_columns",
           "check_datasource", "check_report", "jsonable", "libpq_conninfo", "neutralise",
           "open_source", "parse_datasource"]
