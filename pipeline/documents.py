"""Documents made on demand, outside any schedule: `herald export`, the admin's preview and
downloads, and the HTTP API's export (streamed: `stream_csv`, `stream_rendered`). The same query and render as a run's, with the
report's default parameters and the latest complete period (or the one asked for); nothing is
stored and nothing is sent.
"""

from __future__ import annotations

import contextlib
import io
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from models.base import Format
from models.definition import ReportDefinition
from models.errors import QueryError
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline.query import export_params, no_datasource, query_sections
from pipeline.render import render_job
from renderers import RENDERERS, Document


def make_document(definition: ReportDefinition, tenant: Tenant, fmt: Format, now: datetime,
                  directory: Path, bounds: tuple[datetime, datetime] | None = None,
                  params: dict[str, Any] | None = None,
                  results: list[dict[str, Any]] | None = None) -> Document:
    """One document in `directory`, for the period [start, end) in `bounds` (naive times in the
    tenant's timezone), else the latest complete one as of `now`; `params` (typed) over the
    report's defaults. A PDF's `results`: its sections already read by the caller (in the
    session, and so within the deadline, of its other queries), else read here."""
    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    params = export_params(definition, tenant.timezone, now, bounds, params)
    if results is None:
        results = query_sections(tenant.datasource_url, definition, params) if fmt == Format.PDF else []
    job = render_job(definition, params, tenant, tenant.timezone, results, now, now, compress=False)
    return RENDERERS[fmt](job, directory)


# --- streamed: a document sent while it is being made ----------------------------------------

PIPE_DEPTH = 8             # chunks waiting for the client at most: memory stays flat
PIPE_CHUNK = 256 * 1024    # bytes per chunk handed to the client
FILE_CHUNK = 1024 * 1024


class Cancelled(Exception):
    """Raised in the exporting thread when the client went away: the query is cancelled."""


class _Pipe(io.RawIOBase):
    """A file the export writes into and the client reads from, `PIPE_DEPTH` chunks deep: the
    export waits while the client is slow, and stops (`Cancelled`) when the client is gone."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=PIPE_DEPTH)
        self.cancelled = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.put(bytes(data))
        return len(data)

    def put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self.cancelled.is_set():
                raise Cancelled("the client went away")
            try:
                self.chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


class Streamed(NamedTuple):
    """A document on its way: its name and type, and its bytes as they come. `chunks` must be
    read to the end or closed (closing it stops the work behind it)."""

    filename: str
    media_type: str
    chunks: Iterator[bytes]


def stream_csv(definition: ReportDefinition, tenant: Tenant, now: datetime,
               bounds: tuple[datetime, datetime] | None = None,
               params: dict[str, Any] | None = None) -> Streamed:
    """The report's CSV as the database writes it (COPY on PostgreSQL), handed on chunk by chunk
    from a thread of its own. The first chunk (or the query's error) has come when this
    returns, so a refused query is an error, not a cut-off download; closing `chunks` cancels
    the query in the tenant's database."""
    from renderers.csv_export import CSV_MEDIA_TYPE, export_csv
    from renderers.document import csv_filename

    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    if definition.csv is None:
        raise QueryError(f"Report {definition.slug!r} has no csv query; add a csv: section to its "
                         f"YAML, or export the PDF.")
    params = export_params(definition, tenant.timezone, now, bounds, params)
    settings = get_settings()
    pipe = _Pipe()

    def export() -> None:
        try:
            with io.BufferedWriter(pipe, PIPE_CHUNK) as target:
                export_csv(tenant.datasource_url, definition.csv.sql, params, target,
                           timeout_s=settings.query_timeout_seconds, max_bytes=settings.csv_max_bytes,
                           neutralise_formulas=settings.csv_neutralise_formulas)
            pipe.put(None)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            with contextlib.suppress(Cancelled):
                pipe.put(exc)

    worker = threading.Thread(target=export, name=f"herald-export-{definition.slug}", daemon=True)
    worker.start()
    first = pipe.chunks.get()
    if isinstance(first, BaseException):
        worker.join()
        raise first

    def chunks() -> Iterator[bytes]:
        item = first
        try:
            while item is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = pipe.chunks.get()
        finally:
            pipe.cancelled.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    pipe.chunks.get_nowait()
            worker.join()

    filename = csv_filename(definition, now.astimezone(ZoneInfo(tenant.timezone)).date())
    return Streamed(filename, CSV_MEDIA_TYPE, chunks() if first is not None else iter(()))


def stream_rendered(definition: ReportDefinition, tenant: Tenant, fmt: Format, now: datetime,
                    bounds: tuple[datetime, datetime] | None = None,
                    params: dict[str, Any] | None = None) -> Streamed:
    """A PDF or an XLSX, rendered into a temporary file (XLSX in constant memory), then read
    out chunk by chunk; the file goes when `chunks` ends or is closed."""
    directory = Path(tempfile.mkdtemp(prefix="herald-stream-"))
    try:
        document = make_document(definition, tenant, fmt, now, directory, bounds, params)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise

    def chunks() -> Iterator[bytes]:
        try:
            with document.path.open("rb") as source:
                while chunk := source.read(FILE_CHUNK):
                    yield chunk
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return Streamed(document.filename, document.media_type, chunks())
