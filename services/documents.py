"""Documents made on demand: the admin's preview (with page images) and downloads, and
`herald export` (and the HTTP API's export). Each reads the tenant's data now with the
report's default parameters and the latest complete period (or the one asked for), through
the same query and render as a run (`pipeline.documents`); nothing is stored or sent.
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
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from models.base import Format
from models.db import utcnow
from models.errors import InvalidInput, QueryError
from models.reports import Report
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline.documents import Streamed, make_document, stream_csv, stream_rendered
from pipeline.query import export_params, no_datasource, read_sections
from renderers import Document
from services.access import Action, Who, owned, require
from services.reports import get_report
from services.schedule_fields import parse_params
from services.tenants import get_tenant
from tenantdb import open_source

PREVIEW_ROWS = 20
PAGE_DPI = 80
PAGE_IMAGES_TIMEOUT_SECONDS = 60
NO_PDFTOPPM = "No page images: pdftoppm is not installed (apt-get install poppler-utils)."


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


def preview_report(session: Session, who: Who, report_id: int, rows: int = PREVIEW_ROWS,
                   now: datetime | None = None, images: bool = True) -> Preview:
    """The PDF rendered now (with page images unless `images` is false: the page shows the
    PDF in an embedded viewer when it can) and the CSV query's first `rows` rows.

    The report's default parameters are used; nothing is stored and nothing is sent.
    """
    if rows < 0:
        raise InvalidInput(f"rows is {rows}; ask for 0 or more preview rows.")
    report = owned(session, who, Report, report_id, "report")
    tenant, definition = _tenant_with_source(session, report), report.parsed()
    now = now or utcnow()
    # The PDF's sections and the CSV's first rows are read in one session: one deadline for all.
    params = export_params(definition, tenant.timezone, now)
    with open_source(tenant.datasource_url, get_settings().query_timeout_seconds) as source:
        sections = read_sections(source, definition, params) if definition.sections else None
        result = (source.query(definition.csv.sql, params, cap=rows, where="csv.sql")
                  if definition.csv is not None else None)
    pdf = filename = None
    pages: list[bytes] = []
    note = None
    if sections is not None:
        with tempfile.TemporaryDirectory(prefix="herald-preview-") as directory, \
                (PageImager() if images else contextlib.nullcontext()) as imager:
            document = make_document(definition, tenant, Format.PDF, now, Path(directory),
                                     results=sections)
            pdf, filename = document.path.read_bytes(), document.filename
            if imager is not None:
                pages, note = imager.images(pdf)
    columns: list[str] = []
    first: list[list[Any]] = []
    total = None
    if result is not None:
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


def download_report(session: Session, who: Who, report_id: int, fmt: Format | str,
                    now: datetime | None = None) -> Download:
    """The PDF or the whole CSV made now with the default parameters, named as `herald export`
    names it (`{slug}-{YYYY-MM-DD}.csv`, the date in the tenant's timezone). The CSV is held in
    memory, so it is at most HERALD_CSV_MAX_BYTES."""
    try:
        fmt = Format(str(fmt).lower())
    except ValueError:
        raise InvalidInput(f"Unknown format {fmt!r}; use pdf, csv or xlsx.") from None
    report = owned(session, who, Report, report_id, "report")
    tenant, definition = _tenant_with_source(session, report), report.parsed()
    if fmt == Format.PDF and not definition.sections:
        raise InvalidInput(f"Report {report.slug!r} has no sections, so it makes no PDF; "
                           f"add sections to its YAML or download the CSV.")
    if fmt == Format.CSV and definition.csv is None:
        raise InvalidInput(f"Report {report.slug!r} has no csv query; add a csv: section to its "
                           f"YAML or download the PDF.")
    with tempfile.TemporaryDirectory(prefix="herald-download-") as directory:
        document = make_document(definition, tenant, fmt, now or utcnow(), Path(directory))
        return Download(content=document.path.read_bytes(), filename=document.filename,
                        media_type=document.media_type, rows=document.rows)


def _tenant_with_source(session: Session, report: Report) -> Tenant:
    tenant = session.get(Tenant, report.tenant_id)
    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    return tenant


def export_report(session: Session, who: Who, tenant_slug: str, report_slug: str, fmt: Format,
                  target: Path, now: datetime,
                  bounds: tuple[datetime, datetime] | None = None) -> Document:
    """Render a report now into the file `target` (`herald export`): for the period [start, end)
    in `bounds` (naive times in the tenant's timezone), else the latest complete one."""
    tenant = get_tenant(session, who, tenant_slug)
    report = get_report(session, who, tenant, report_slug)
    definition = report.parsed()
    with tempfile.TemporaryDirectory(prefix="herald-export-") as directory:
        document = make_document(definition, tenant, fmt, now, Path(directory), bounds)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(document.path, target)
    return replace(document, path=target)


def export_streamed(session: Session, who: Who, tenant_id: int, report_slug: str, fmt: Format | str,
                    *, now: datetime, bounds: tuple[datetime, datetime] | None = None,
                    params: dict[str, Any] | None = None) -> Streamed:
    """A report of their tenant as a document on its way (the HTTP API's export): the CSV as
    the database writes it, a PDF or an XLSX from a temporary file. `params` are checked and
    typed as a schedule's are. Reading `chunks` to the end, or closing it, is the caller's."""
    require(who, tenant_id, Action.READ)
    try:
        fmt = Format(str(fmt).lower())
    except ValueError:
        raise InvalidInput(f"Unknown format {fmt!r}; use pdf, csv or xlsx.") from None
    tenant = session.get(Tenant, tenant_id)
    report = get_report(session, who, tenant, report_slug)
    definition, typed = report.parsed(), parse_params(report, params)
    if fmt == Format.PDF and not definition.sections:
        raise InvalidInput(f"Report {report.slug!r} has no sections, so it makes no PDF; export "
                           f"its CSV or XLSX.")
    if fmt != Format.PDF and definition.csv is None:
        raise InvalidInput(f"Report {report.slug!r} has no csv query, so it makes no "
                           f"{fmt.value.upper()}; export its PDF.")
    if fmt == Format.CSV:
        return stream_csv(definition, tenant, now, bounds, typed)
    return stream_rendered(definition, tenant, fmt, now, bounds, typed)


def period_bounds(start: str | None, end: str | None,
                  names: tuple[str, str] = ("period_start", "period_end")) -> tuple[datetime, datetime] | None:
    """A period given as two ISO dates or times (a date is its midnight; a naive time is in the
    tenant's timezone), or None for neither. `names` are the fields' names as the caller knows them."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise InvalidInput(f"Give both {names[0]} and {names[1]}, or neither for the latest "
                           f"complete period.")
    bounds = []
    for name, text in zip(names, (start, end), strict=True):
        try:
            bounds.append(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise InvalidInput(f"{name} {text!r} is not an ISO date or time; write e.g. 2026-11-23 "
                               f"or 2026-11-23T09:00.") from None
    return bounds[0], bounds[1]
