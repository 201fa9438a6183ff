"""Conditional sends (`send_if`): whether a run's report goes out, and if not, why not.

The condition is read in the run's own read-only transaction, before the sections, so
an alert that is not met costs one `LIMIT 1` query. A condition that is not met ends
the run SKIPPED with the sentence returned here; nothing is sent, and history says why.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from models.definition import ReportDefinition, RowsCondition, SendIf, SqlCondition, section_name
from models.errors import QueryError
from tenantdb import TenantSource

SEND_COLUMN = "send"


def unmet(source: TenantSource, send_if: SendIf, definition: ReportDefinition,
          params: dict[str, Any]) -> str | None:
    """None when the report should be sent; otherwise the reason it is not, in one sentence.

    Raises QueryError when the condition itself cannot be read (a missing `send` column,
    a query the tenant database refuses): the run then fails, it is not skipped.
    """
    if send_if == "always":
        return None
    if isinstance(send_if, SqlCondition):
        return _alert(source, send_if.sql, params)
    if isinstance(send_if, RowsCondition):
        index, section = next((i, s) for i, s in enumerate(definition.sections)
                              if s.title == send_if.rows)
        _, row = source.first_row(section.sql, params, where=section_name(index, section.title))
        if row is None:
            return (f"Section {section.title!r} returned no rows, and this report is sent only when "
                    f"it does (send_if: rows: {section.title}).")
        return None
    # send_if: rows: the CSV query (the definition requires one).
    _, row = source.first_row(definition.csv.sql, params, where="csv.sql")
    if row is None:
        return "csv.sql returned no rows, and this report is sent only when it does (send_if: rows)."
    return None


def _alert(source: TenantSource, sql: str, params: dict[str, Any]) -> str | None:
    columns, row = source.first_row(sql, params, where="send_if.sql")
    if SEND_COLUMN not in columns:
        raise QueryError(f"send_if.sql has no column 'send' (it returns {', '.join(columns) or 'none'}); "
                         f"write the alert condition as SELECT <a true or false expression> AS send.")
    if row is None:
        return "The alert condition was not met: send_if.sql returned no rows."
    value = row[columns.index(SEND_COLUMN)]
    if not isinstance(value, (bool, int, float, Decimal, type(None))):
        raise QueryError(f"send_if.sql returned send = {str(value)[:40]!r}, which is not true or false; "
                         f"return a boolean, e.g. SELECT count(*) > 0 AS send.")
    if value:
        return None
    others = ", ".join(f"{name} = {_shown(v)}" for name, v in zip(columns, row, strict=True)
                       if name != SEND_COLUMN)
    return (f"The alert condition was not met: send_if.sql returned send = {_shown(value)}"
            f"{f' ({others})' if others else ''}.")


def _shown(value: Any) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"
