"""What every renderer is given: the report, its query results, and where and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from models.definition import ReportDefinition


@dataclass(frozen=True)
class RenderJob:
    definition: ReportDefinition
    results: list[dict[str, Any]]      # the query stage's sections (PDF); empty for CSV only
    params: dict[str, Any]
    tenant: str
    datasource_url: str
    generated_at: datetime             # aware, in the schedule's timezone
    period: date                       # the slot's local date: names the files
    compress: bool = True              # zip a CSV above HERALD_CSV_COMPRESS_ABOVE_BYTES
    tenant_key: str | None = None      # renders for one key may share a browser context
    timezone: str | None = None        # the tenant's, for timestamps in an XLSX; None: generated_at's
