"""CSV at database speed, in constant memory, through the tenant boundary.

PostgreSQL writes it with `COPY (…) TO STDOUT WITH (FORMAT csv, HEADER)`, with text
cells that a spreadsheet would run as formulas prefixed with `'` by the server;
SQLite streams rows through `csv.writer` (see `tenantdb`). No row cap: a CSV past
HERALD_CSV_MAX_BYTES fails with the size and the limit, and a large one is zipped.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from renderers.document import Document
from tenantdb import open_source

CSV_MEDIA_TYPE = "text/csv"
ZIP_MEDIA_TYPE = "application/zip"


def export_csv(url: str, sql: str, params: Mapping[str, Any], target: BinaryIO, *,
               timeout_s: float, max_bytes: int, neutralise_formulas: bool = True) -> int:
    """Write the query's rows as CSV (with a header) to `target`; returns the row count."""
    with open_source(url, timeout_s) as source:
        return source.export_csv(sql, params, target, neutralise=neutralise_formulas,
                                 max_bytes=max_bytes)


def zip_bytes(filename: str, data: bytes) -> bytes:
    """`data` as the only member of a zip archive, compressed the way `render_csv` does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(filename, data)
    return buffer.getvalue()


def render_csv(url: str, sql: str, params: Mapping[str, Any], directory: Path, filename: str, *,
               timeout_s: float, max_bytes: int, compress_above: int | None,
               neutralise_formulas: bool = True) -> Document:
    """Export to `directory/filename`; zip it when it is larger than `compress_above` bytes."""
    path = directory / filename
    with path.open("wb") as target:
        rows = export_csv(url, sql, params, target, timeout_s=timeout_s, max_bytes=max_bytes,
                          neutralise_formulas=neutralise_formulas)
    size = path.stat().st_size
    if compress_above is None or size <= compress_above:
        return Document(path=path, filename=filename, media_type=CSV_MEDIA_TYPE, size=size, rows=rows)
    zipped = path.with_name(filename + ".zip")
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.write(path, arcname=filename)
    path.unlink()
    return Document(path=zipped, filename=zipped.name, media_type=ZIP_MEDIA_TYPE,
                    size=zipped.stat().st_size, rows=rows)
