"""The reports page's data: list a tenant's reports, edit their YAML, preview and download them.

Each function takes a session and the logged-in `Viewer`, checks their tenant and role first,
and returns plain data. Every query reaches the tenant's database through `tenantdb`.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, select

from admin.access import Action, Viewer, owned, require
from jobs.pipeline import export_params, no_datasource, query_sections, render_job
from models import catalog
from models.base import Format
from models.db import utcnow
from models.definition import ReportDefinition, parse_definition_text
from models.errors import InvalidInput, QueryError
from models.reports import Report
from models.settings import get_settings
from models.tenancy import Tenant
from renderers import RENDERERS, Document
from tenantdb import open_source

PREVIEW_ROWS = 20
PAGE_DPI = 80
PAGE_IMAGES_TIMEOUT_SECONDS = 60
NO_PDFTOPPM = "No page images: pdftoppm is not installed (apt-get install poppler-utils)."
# The order a person reads a report in; keys not named here follow in stored order.
KEY_ORDER = {
    "report": ("slug", "title", "params", "sections", "csv"),
    "section": ("kind", "title", "sql", "column", "max_rows", "chart"),
    "chart": ("mark", "x", "y", "color"),
    "csv": ("sql", "filename"),
}


@dataclass(frozen=True)
class ReportSummary:
    """One row of the reports list."""

    id: int
    slug: str
    title: str
    sections: int
    formats: tuple[str, ...]  # "pdf" when it has sections, "csv" when it has a csv query
    updated_at: datetime      # last saved (created, if never updated)


@dataclass(frozen=True)
class SavedReport:
    """What a save did: the report's id, slug and title, and whether it was created."""

    id: int
    slug: str
    title: str
    created: bool


@dataclass(frozen=True)
class Preview:
    """A report rendered now with its default parameters; nothing stored or sent."""

    pdf: bytes | None            # None when the report has no sections
    pdf_filename: str | None
    pages: list[bytes]           # each page as PNG at 80 dpi; empty (see `note`) without pdftoppm
    note: str | None
    csv_columns: list[str]       # empty when the report has no csv query
    csv_rows: list[list[Any]]    # the CSV query's first rows, as the data source returns them
    csv_total: int | None        # rows the CSV query returns in all (it is read to the end to
                                 # count them); None without a csv query


@dataclass(frozen=True)
class Download:
    """A document made on demand, like `herald export`."""

    content: bytes
    filename: str
    media_type: str
    rows: int | None = None      # CSV: data rows


def list_reports(session: Session, viewer: Viewer, tenant_id: int) -> list[ReportSummary]:
    """The tenant's reports by slug, with what each can make."""
    require(viewer, tenant_id, Action.READ)
    reports = session.exec(select(Report).where(Report.tenant_id == tenant_id).order_by(Report.slug))
    return [_summary(report) for report in reports]


def _summary(report: Report) -> ReportSummary:
    sections = len(report.definition.get("sections") or [])
    formats = (("pdf",) if sections else ()) + (("csv",) if report.definition.get("csv") else ())
    return ReportSummary(id=report.id, slug=report.slug, title=report.title, sections=sections,
                         formats=formats, updated_at=report.updated_at or report.created_at)


def report_yaml(session: Session, viewer: Viewer, report_id: int) -> str:
    """The stored definition as YAML, keys in reading order: what the edit form starts from."""
    report = owned(session, viewer, Report, report_id, "report")
    return definition_yaml(report.definition)


def definition_yaml(definition: dict[str, Any]) -> str:
    """A stored definition as YAML text that parses back to the same definition."""
    data = _ordered(definition, "report")
    if isinstance(data.get("sections"), list):
        data["sections"] = [_section(s) if isinstance(s, dict) else s for s in data["sections"]]
    if isinstance(data.get("csv"), dict):
        data["csv"] = _ordered(data["csv"], "csv")
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _section(section: dict[str, Any]) -> dict[str, Any]:
    ordered = _ordered(section, "section")
    if isinstance(ordered.get("chart"), dict):
        ordered["chart"] = _ordered(ordered["chart"], "chart")
    return ordered


def _ordered(data: dict[str, Any], kind: str) -> dict[str, Any]:
    first = [k for k in KEY_ORDER[kind] if k in data]
    return {k: data[k] for k in first + [k for k in data if k not in first]}


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key; multi-line text (SQL) as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def save_report_text(session: Session, viewer: Viewer, tenant_id: int, text: str,
                     source: str = "report.yaml", report_id: int | None = None) -> SavedReport:
    """Validate YAML text and save it as the tenant's report with its slug (create or update).

    Errors name `source` and the field as `herald report add` does; each query is checked
    against the tenant's data source first, and nothing is written on error. With
    `report_id` (an edit), the text must keep that report's slug.
    """
    require(viewer, tenant_id, Action.EDIT)
    if report_id is not None:
        editing = owned(session, viewer, Report, report_id, "report", Action.EDIT)
        if editing.tenant_id != tenant_id:
            raise InvalidInput(f"Report {report_id} belongs to another of your tenants; "
                               f"choose its tenant to edit it.")
    definition = parse_definition_text(text, source)
    if report_id is not None and definition.slug != editing.slug:
        raise InvalidInput(f"{source}: slug must stay {editing.slug!r} when editing that report; "
                           f"upload the text as a new report to use slug {definition.slug!r}.")
    tenant = session.get(Tenant, tenant_id)
    report, created = catalog.save_report(session, tenant, definition, actor=viewer.email)
    return SavedReport(id=report.id, slug=report.slug, title=report.title, created=created)


def preview_report(session: Session, viewer: Viewer, report_id: int, rows: int = PREVIEW_ROWS,
                   now: datetime | None = None, images: bool = True) -> Preview:
    """The PDF rendered now (with page images unless `images` is false: the page shows the
    PDF in an embedded viewer when it can) and the CSV query's first `rows` rows.

    The report's default parameters are used; nothing is stored and nothing is sent.
    """
    if rows < 0:
        raise InvalidInput(f"rows is {rows}; ask for 0 or more preview rows.")
    report = owned(session, viewer, Report, report_id, "report")
    tenant, definition = _tenant_with_source(session, report), report.parsed()
    now = now or utcnow()
    pdf = filename = None
    pages: list[bytes] = []
    note = None
    if definition.sections:
        with tempfile.TemporaryDirectory(prefix="herald-preview-") as directory, \
                (PageImager() if images else contextlib.nullcontext()) as imager:
            document = _render(definition, tenant, Format.PDF, now, Path(directory))
            pdf, filename = document.path.read_bytes(), document.filename
            if imager is not None:
                pages, note = imager.images(pdf)
    columns: list[str] = []
    first: list[list[Any]] = []
    total = None
    if definition.csv is not None:
        with open_source(tenant.datasource_url, get_settings().query_timeout_seconds) as source:
            params = export_params(definition, tenant.timezone, now)
            result = source.query(definition.csv.sql, params, cap=rows, where="csv.sql")
        columns, first, total = result.columns, result.rows, result.total
    return Preview(pdf=pdf, pdf_filename=filename, pages=pages, note=note, csv_columns=columns,
                   csv_rows=first, csv_total=total)


def page_images(pdf: bytes) -> tuple[list[bytes], str | None]:
    """Each page of `pdf` as PNG bytes at 80 dpi; ([], why) when pdftoppm is missing or fails."""
    with PageImager() as imager:
        return imager.images(pdf)


class PageImager:
    """pdftoppm, started before the PDF exists (it reads the PDF from stdin) so that its
    start-up overlaps the render. It rasterises at 80 dpi and streams each page as PPM,
    which is packed into a PNG here while pdftoppm draws the next page (pdftoppm's own
    `-png` encoder takes several times longer than its rasteriser)."""

    def __init__(self) -> None:
        self.process, self.messages, self.note = None, None, NO_PDFTOPPM
        pdftoppm = shutil.which("pdftoppm")
        if pdftoppm is None:
            return
        self.messages = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen([pdftoppm, "-r", str(PAGE_DPI), "-"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=self.messages)
        except OSError as exc:
            self.note = f"No page images: pdftoppm did not start ({exc.strerror}); the PDF itself is complete."

    def __enter__(self) -> PageImager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            for pipe in (self.process.stdin, self.process.stdout):
                with contextlib.suppress(OSError):  # a pipe pdftoppm closed first
                    pipe.close()
            self.process.wait()
        if self.messages is not None:
            self.messages.close()

    def images(self, pdf: bytes) -> tuple[list[bytes], str | None]:
        """The pages of `pdf` as PNG bytes; ([], why) when pdftoppm is missing or fails."""
        if self.process is None:
            return [], self.note
        watchdog = threading.Timer(PAGE_IMAGES_TIMEOUT_SECONDS, self.process.kill)
        watchdog.start()
        try:
            # pdftoppm reads to the end (the PDF's index is there) before it writes a page.
            self.process.stdin.write(pdf)
            self.process.stdin.close()
            pages = [_png(*page) for page in _ppm_pages(self.process.stdout)]
        except (OSError, ValueError):
            self.process.kill()
            pages = []
        finally:
            watchdog.cancel()
            status = self.process.wait()
        if status == 0 and pages:
            return pages, None
        self.messages.seek(0)
        lines = self.messages.read().decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines and status > 0 else (
            f"exit status {status}" if status > 0 else "stopped: it ran too long or wrote bad output")
        return [], f"No page images: pdftoppm failed ({detail}); the PDF itself is complete."


def _ppm_pages(stream: Any) -> Iterator[tuple[int, int, bytes]]:
    """(width, height, RGB bytes) of each binary PPM (P6, 8 bits) in the stream, as it comes."""
    while magic := stream.readline():
        size, depth = stream.readline().split(), stream.readline().strip()
        if magic.strip() != b"P6" or len(size) != 2 or depth != b"255":
            raise ValueError("pdftoppm wrote something other than 8-bit PPM")
        width, height = int(size[0]), int(size[1])
        pixels = stream.read(width * height * 3)
        if len(pixels) != width * height * 3:
            raise ValueError("pdftoppm stopped in the middle of a page")
        yield width, height, pixels


def _png(width: int, height: int, pixels: bytes) -> bytes:
    """8-bit RGB pixels as a PNG (no row filter, zlib's fastest level: pages are mostly white)."""
    stride = width * 3
    rows = b"".join(b"\0" + pixels[i:i + stride] for i in range(0, stride * height, stride))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1))
            + chunk(b"IEND", b""))


def download_report(session: Session, viewer: Viewer, report_id: int, fmt: Format | str,
                    now: datetime | None = None) -> Download:
    """The PDF or the whole CSV made now with the default parameters, named as `herald export`
    names it (`{slug}-{YYYY-MM-DD}.csv`, the date in the tenant's timezone). The CSV is held in
    memory, so it is at most HERALD_CSV_MAX_BYTES."""
    try:
        fmt = Format(str(fmt).lower())
    except ValueError:
        raise InvalidInput(f"Unknown format {fmt!r}; use pdf, csv or xlsx.") from None
    report = owned(session, viewer, Report, report_id, "report")
    tenant, definition = _tenant_with_source(session, report), report.parsed()
    if fmt == Format.PDF and not definition.sections:
        raise InvalidInput(f"Report {report.slug!r} has no sections, so it makes no PDF; "
                           f"add sections to its YAML or download the CSV.")
    if fmt == Format.CSV and definition.csv is None:
        raise InvalidInput(f"Report {report.slug!r} has no csv query; add a csv: section to its "
                           f"YAML or download the PDF.")
    with tempfile.TemporaryDirectory(prefix="herald-download-") as directory:
        document = _render(definition, tenant, fmt, now or utcnow(), Path(directory))
        return Download(content=document.path.read_bytes(), filename=document.filename,
                        media_type=document.media_type, rows=document.rows)


def _tenant_with_source(session: Session, report: Report) -> Tenant:
    tenant = session.get(Tenant, report.tenant_id)
    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    return tenant


def _render(definition: ReportDefinition, tenant: Tenant, fmt: Format, now: datetime,
            directory: Path) -> Document:
    """One document in `directory`, made as `jobs.pipeline.export_report` makes it (for the
    latest complete period as of `now`)."""
    params = export_params(definition, tenant.timezone, now)
    results = query_sections(tenant.datasource_url, definition, params) if fmt == Format.PDF else []
    job = render_job(definition, params, tenant, tenant.timezone, results, now, now, compress=False)
    return RENDERERS[fmt](job, directory)
