"""Checks made on write, where the tenant's database can answer cheaply: is the data
source safe to read, and is each of a report's queries one SELECT with the columns its
section needs? Nothing here reads a row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.definition import ReportDefinition, SqlCondition, section_name
from models.errors import DataSourceUnreachable, InvalidInput, QueryError
from tenantdb.sources import open_source

CHECK_TIMEOUT_SECONDS = 10.0


def check_columns(section: Any, columns: list[str], where: str) -> None:
    """Refuse a section whose query lacks a column the section shows."""
    missing = [c for c in section.required_columns() if c not in columns]
    if missing:
        raise QueryError(f"{where} has no column {', '.join(map(repr, missing))}; its query returns "
                         f"{', '.join(columns) or 'no columns'}.")


def check_datasource(url: str) -> str:
    """Connect once, which checks the role; returns the URL, or raises InvalidInput."""
    try:
        with open_source(url, CHECK_TIMEOUT_SECONDS):
            pass
    except (QueryError, DataSourceUnreachable) as exc:
        raise InvalidInput(str(exc)) from None
    return url


def check_report(url: str, definition: ReportDefinition, params: Mapping[str, Any]) -> None:
    """Ask the tenant's database to describe every query of the report bound to `params`,
    the values and types a run binds (its defaults and period, `pipeline.query.export_params`),
    without reading a row; raises InvalidInput naming the field."""
    try:
        with open_source(url, CHECK_TIMEOUT_SECONDS) as source:
            for i, section in enumerate(definition.sections):
                where = f"{section_name(i, section.title)}.sql"
                check_columns(section, source.columns(section.sql, params, where=where), where)
            if definition.csv is not None:
                source.columns(definition.csv.sql, params, where="csv.sql")
            if isinstance(definition.send_if, SqlCondition):
                columns = source.columns(definition.send_if.sql, params, where="send_if.sql")
                if "send" not in columns:
                    raise QueryError(f"send_if.sql has no column 'send' (it returns {', '.join(columns)}); "
                                     f"write the alert condition as SELECT <a true or false expression> AS send.")
    except DataSourceUnreachable as exc:
        raise InvalidInput(f"The report's SQL cannot be checked: {exc}") from None
    except QueryError as exc:
        raise InvalidInput(str(exc)) from None
