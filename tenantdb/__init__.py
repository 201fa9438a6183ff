"""The one way into a tenant's database.

Every use of a tenant's data source (the query stage, the CSV export, checks when
a report is saved, previews) goes through `open_source`: one read-only transaction
in which each report query is exactly one SELECT, bounded by a timeout, refused by
the database itself when it is anything else. PostgreSQL and SQLite are supported.
"""

from __future__ import annotations

from tenantdb.base import FORMULA_STARTS, QueryResult, TenantSource, jsonable, neutralise
from tenantdb.checks import check_columns, check_datasource, check_report
from tenantdb.sources import SOURCES, open_source, parse_datasource

__all__ = ["FORMULA_STARTS", "QueryResult", "SOURCES", "TenantSource", "check_columns",
           "check_datasource", "check_report", "jsonable", "neutralise", "open_source",
           "parse_datasource"]
