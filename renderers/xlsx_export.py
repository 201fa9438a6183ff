"""XLSX in constant memory, through the tenant boundary: the csv query's rows as typed cells.

XlsxWriter's `constant_memory` mode writes each row to a temporary file (in the render's
own directory) as soon as the next row starts, so memory stays flat whatever the rows.
What a cell holds:
- int, float and numeric are numbers; an integer beyond ±2**53, which Excel's doubles
  cannot hold exactly, is text so no digit is lost; NaN and infinities are text.
- date, time, timestamp and interval are Excel dates with a number format. Excel has no
  time zones, so an aware timestamp is converted to the tenant's timezone and written as
  that wall-clock time (a time with a zone keeps its wall-clock time).
- text is always a text cell, never a formula: `=SUM(A1)` reads as `=SUM(A1)`, so nothing
  needs neutralising as in the CSV (text shaped like XlsxWriter's own rich-text XML is
  written so it cannot add cells or formulas). bytes are `\\x` hex as in the CSV; JSON is JSON text.
- SQLite has no date type: its dates are text and stay text.
Excel's limits: a sheet holds 1,048,576 rows with the header, so a longer result carries
on in sheets "Data (2)", "Data (3)"…, each with the header; more than 16,384 columns or
a cell over 32,767 characters fails with a sentence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import chain, islice
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from models.definition import ReportDefinition
from models.errors import QueryError
from renderers.document import Document, csv_filename
from tenantdb import open_source

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_CHARS = 32_767
ROWS_PER_SHEET = EXCEL_MAX_ROWS - 1  # the header takes a row of every sheet
SHEET = "Data"
RICH_TEXT = ("<r>", "</r>")  # how XlsxWriter tells its rich text from plain text
EXACT_INT = 2**53
SAMPLE_ROWS = 1_000  # column widths fit the header and the first rows
MIN_WIDTH, MAX_WIDTH = 6, 60
NUMBER_FORMATS = {date: "yyyy-mm-dd", datetime: "yyyy-mm-dd hh:mm:ss", time: "hh:mm:ss",
                  timedelta: "[h]:mm:ss"}
SHOWN_LENGTHS = {date: 10, datetime: 19, time: 8, timedelta: 10, bool: 5}
# write() is never called, but should anyone call it: text is text.
WORKBOOK_OPTIONS = {"constant_memory": True, "strings_to_formulas": False,
                    "strings_to_urls": False, "strings_to_numbers": False}


def xlsx_filename(definition: ReportDefinition, on: date) -> str:
    """The CSV's name with `.xlsx`: `{slug}-{YYYY-MM-DD}.xlsx` unless the report names its CSV."""
    name = csv_filename(definition, on)
    return (name[:-4] if name.lower().endswith(".csv") else name) + ".xlsx"


def render_xlsx(url: str, sql: str, params: Mapping[str, Any], directory: Path, filename: str, *,
                zone: tzinfo, timeout_s: float) -> Document:
    """Export to `directory/filename`."""
    path = directory / filename
    rows = export_xlsx(url, sql, params, path, zone=zone, timeout_s=timeout_s)
    return Document(path=path, filename=filename, media_type=XLSX_MEDIA_TYPE,
                    size=path.stat().st_size, rows=rows)


def export_xlsx(url: str, sql: str, params: Mapping[str, Any], path: Path, *, zone: tzinfo,
                timeout_s: float, rows_per_sheet: int = ROWS_PER_SHEET, where: str = "csv.sql") -> int:
    """Write the query's rows to the workbook `path`, under a bold header; returns the row count."""
    with open_source(url, timeout_s) as source, source.stream(sql, params, where=where) as result:
        return write_workbook(path, result.columns, result.rows, zone=zone,
                              rows_per_sheet=rows_per_sheet, where=where)


def write_workbook(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                   zone: tzinfo, rows_per_sheet: int = ROWS_PER_SHEET, where: str = "csv.sql") -> int:
    """Stream `rows` into a new workbook at `path`; returns the number of data rows."""
    if len(columns) > EXCEL_MAX_COLUMNS:
        raise QueryError(f"{where} returns {len(columns):,} columns, over Excel's {EXCEL_MAX_COLUMNS:,} "
                         f"a sheet; select fewer columns or send CSV instead.")
    rows = iter(rows)
    sample = list(islice(rows, SAMPLE_ROWS))
    book = xlsxwriter.Workbook(str(path), {**WORKBOOK_OPTIONS, "tmpdir": str(path.parent)})
    try:
        return _Sheets(book, list(columns), column_widths(columns, sample), zone, rows_per_sheet,
                       where).write(chain(sample, rows))
    finally:
        book.close()  # also after a failure, so no temporary file stays open


def column_widths(columns: Sequence[str], sample: Iterable[Sequence[Any]]) -> list[int]:
    """Widths in characters that fit the (bold) header and the sampled cells, within bounds."""
    widths = [len(name) + 2 for name in columns]
    for row in sample:
        for c, value in enumerate(row):
            widths[c] = max(widths[c], _shown_length(value))
    return [min(max(w + 1, MIN_WIDTH), MAX_WIDTH) for w in widths]


def _shown_length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return max(map(len, value.splitlines() or [""]))
    known = SHOWN_LENGTHS.get(value.__class__)
    return known if known is not None else len(str(value))


class _Sheets:
    """The workbook being written: sheets of at most `rows_per_sheet` rows below a frozen header."""

    def __init__(self, book: xlsxwriter.Workbook, columns: list[str], widths: list[int],
                 zone: tzinfo, rows_per_sheet: int, where: str) -> None:
        self.book, self.columns, self.widths, self.zone = book, columns, widths, zone
        self.rows_per_sheet, self.where = rows_per_sheet, where
        self.header = book.add_format({"bold": True})
        self.formats = {kind: book.add_format({"num_format": f}) for kind, f in NUMBER_FORMATS.items()}
        self.sheets = 0
        self.written = 0  # data rows in the sheets before the current one

    def write(self, rows: Iterator[Sequence[Any]]) -> int:
        while True:
            first = next(rows, None)
            if first is None and self.sheets:
                return self.written
            sheet = self._new_sheet()
            count = self._fill(sheet, chain([first], islice(rows, self.rows_per_sheet - 1))
                               if first is not None else ())
            sheet.autofilter(0, 0, count, len(self.columns) - 1)
            self.written += count
            if count < self.rows_per_sheet:
                return self.written

    def _new_sheet(self) -> Worksheet:
        self.sheets += 1
        sheet = self.book.add_worksheet(SHEET if self.sheets == 1 else f"{SHEET} ({self.sheets})")
        for c, (name, width) in enumerate(zip(self.columns, self.widths, strict=True)):
            sheet.set_column(c, c, width)
            self._text(sheet, 0, c, name, self.header)
        sheet.freeze_panes(1, 0)
        return sheet

    def _fill(self, sheet: Worksheet, rows: Iterable[Sequence[Any]]) -> int:
        """Write `rows` below the header; returns how many. Text and exact integers, most
        cells, take the short way; everything else goes through `_cell`."""
        write_string, write_number, cell = sheet.write_string, sheet.write_number, self._cell
        r = 0
        for r, row in enumerate(rows, 1):
            for c, value in enumerate(row):
                kind = value.__class__
                if kind is str:
                    # _text raises on -2 (cut at Excel's limit) and writes "<r>…</r>" safely
                    if value.startswith(RICH_TEXT[0]) or write_string(r, c, value):
                        self._text(sheet, r, c, value)
                elif kind is int and -EXACT_INT <= value <= EXACT_INT:
                    write_number(r, c, value)
                elif value is not None:
                    cell(sheet, r, c, value)
        return r

    def _cell(self, sheet: Worksheet, r: int, c: int, value: Any) -> None:
        if isinstance(value, bool):
            sheet.write_boolean(r, c, value)
        elif isinstance(value, int):
            self._text(sheet, r, c, str(value))
        elif isinstance(value, (float, Decimal)):
            if math.isfinite(value):
                sheet.write_number(r, c, value)
            else:
                self._text(sheet, r, c, "NaN" if math.isnan(value) else
                           ("Infinity" if value > 0 else "-Infinity"))
        elif isinstance(value, (datetime, date)):
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(self.zone).replace(tzinfo=None)
            if value.year < 1900:  # before Excel's first date
                self._text(sheet, r, c, value.isoformat())
            else:
                sheet.write_datetime(r, c, value, self.formats[datetime if isinstance(value, datetime)
                                                               else date])
        elif isinstance(value, time):
            sheet.write_datetime(r, c, value.replace(tzinfo=None), self.formats[time])
        elif isinstance(value, timedelta):
            if value < timedelta(0):  # Excel shows a negative duration as ####
                self._text(sheet, r, c, str(value))
            else:
                sheet.write_datetime(r, c, value, self.formats[timedelta])
        elif isinstance(value, (bytes, memoryview)):
            self._text(sheet, r, c, "\\x" + bytes(value).hex())  # as the CSV writes bytea
        elif isinstance(value, (dict, list)):
            self._text(sheet, r, c, json.dumps(value, ensure_ascii=False, default=str))
        else:
            self._text(sheet, r, c, str(value))

    def _text(self, sheet: Worksheet, r: int, c: int, text: str, cell_format: Any = None) -> None:
        if text.startswith(RICH_TEXT[0]) and text.endswith(RICH_TEXT[1]):
            # In constant_memory mode XlsxWriter copies such a string into the sheet's XML
            # unescaped, taking it for its own rich text: data could add cells and formulas.
            # As three plain runs of rich text, every character is escaped.
            parts = (text[:1], text[1:2], text[2:]) + ((cell_format,) if cell_format else ())
            failed = sheet.write_rich_string(r, c, *parts)
        else:
            failed = sheet.write_string(r, c, text, cell_format)
        if failed:
            raise QueryError(self._too_long(r, c, text))

    def _too_long(self, r: int, c: int, text: str) -> str:
        where = "its header" if r == 0 else f"row {self.written + r:,}"
        return (f"{self.where} has {len(text):,} characters in column {self.columns[c]!r} of "
                f"{where}, over Excel's {EXCEL_MAX_CHARS:,} a cell; shorten it in the query "
                f"(left(…, {EXCEL_MAX_CHARS})) or send CSV instead.")
