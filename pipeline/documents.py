"""Documents made on demand, outside any schedule: `herald export`, the admin's preview and
downloads (and the HTTP API's export). The same query and render as a run's, with the
report's default parameters and the latest complete period (or the one asked for); nothing is
stored and nothing is sent.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from models.base import Format
from models.definition import ReportDefinition
from models.errors import QueryError
from models.tenancy import Tenant
from pipeline.query import export_params, no_datasource, query_sections
from pipeline.render import render_job
from renderers import RENDERERS, Document


def make_document(definition: ReportDefinition, tenant: Tenant, fmt: Format, now: datetime,
                  directory: Path, bounds: tuple[datetime, datetime] | None = None) -> Document:
    """One document in `directory`, for the period [start, end) in `bounds` (naive times in the
    tenant's timezone), else the latest complete one as of `now`."""
    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    params = export_params(definition, tenant.timezone, now, bounds)
    results = query_sections(tenant.datasource_url, definition, params) if fmt == Format.PDF else []
    job = render_job(definition, params, tenant, tenant.timezone, results, now, now, compress=False)
    return RENDERERS[fmt](job, directory)
