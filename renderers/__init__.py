"""Renderers turn a report's data into documents; they never send.

`RENDERERS` maps each `models.base.Format` to the function that renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from models.base import Format
from models.settings import get_settings
from renderers.document import Document, csv_filename
from renderers.job import RenderJob


def render_pdf_document(job: RenderJob, directory: Path) -> Document:
    from renderers.html import kpi_summary, render_html
    from renderers.pdf import PDF_MEDIA_TYPE, print_pdf

    html = render_html(job.definition, job.results, tenant=job.tenant, params=job.params,
                       generated_at=job.generated_at,
                       zone=ZoneInfo(job.timezone) if job.timezone else None)
    kpis = [f"{title}: {value}" for title, value in kpi_summary(job.definition, job.results)]
    content = print_pdf(html, job.definition.title, kpis, job.tenant_key)
    filename = f"{job.definition.slug}-{job.period.isoformat()}.pdf"
    path = directory / filename
    path.write_bytes(content)
    return Document(path=path, filename=filename, media_type=PDF_MEDIA_TYPE, size=len(content))


def _table_query(job: RenderJob, fmt: Format) -> str:
    """The csv query, which the CSV and the XLSX both export."""
    from models.errors import QueryError

    if job.definition.csv is None:
        raise QueryError(f"Report {job.definition.slug!r} has no csv query; add a csv: section "
                         f"or drop {fmt.value} from the schedule's formats.")
    return job.definition.csv.sql


def render_csv_document(job: RenderJob, directory: Path) -> Document:
    from renderers.csv_export import render_csv

    sql = _table_query(job, Format.CSV)
    settings = get_settings()
    return render_csv(job.datasource_url, sql, job.params, directory,
                      csv_filename(job.definition, job.period),
                      timeout_s=settings.query_timeout_seconds, max_bytes=settings.csv_max_bytes,
                      compress_above=(settings.csv_compress_above_bytes or None) if job.compress else None,
                      neutralise_formulas=settings.csv_neutralise_formulas)


def render_xlsx_document(job: RenderJob, directory: Path) -> Document:
    """The csv query's rows as typed cells; timestamps in the tenant's timezone."""
    from zoneinfo import ZoneInfo

    from renderers.xlsx_export import render_xlsx, xlsx_filename

    sql = _table_query(job, Format.XLSX)
    zone = ZoneInfo(job.timezone) if job.timezone else job.generated_at.tzinfo
    return render_xlsx(job.datasource_url, sql, job.params, directory,
                       xlsx_filename(job.definition, job.period), zone=zone,
                       timeout_s=get_settings().query_timeout_seconds)


RENDERERS: dict[Format, Callable[[RenderJob, Path], Document]] = {
    Format.PDF: render_pdf_document,
    Format.CSV: render_csv_document,
    Format.XLSX: render_xlsx_document,
}

__all__ = ["RENDERERS", "Document", "RenderJob"]
