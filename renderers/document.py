"""What a renderer produces: a small frozen record, never sent by the renderer itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from models.definition import ReportDefinition
from models.text import plain_file_name


@dataclass(frozen=True)
class Document:
    """A rendered file on local disk, ready to store as an artifact or attach."""

    path: Path
    filename: str
    media_type: str
    size: int
    rows: int | None = None  # CSV: data rows written


def csv_filename(definition: ReportDefinition, on: date) -> str:
    """`{slug}-{YYYY-MM-DD}.csv`, or the report's own template with the same two fields, made
    plain (no control or format characters, no path, a `.csv` ending unless it has none): a
    template saved before names were checked is cleaned here, where every document's name is made."""
    template = definition.csv.filename if definition.csv else "{slug}-{date}.csv"
    return plain_file_name(template.format(slug=definition.slug, date=on.isoformat()), ".csv")
