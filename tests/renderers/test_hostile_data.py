"""Hostile data in a tenant's database: the PDF shows it literally, the CSV round-trips it."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from models.base import Format
from models.definition import parse_definition
from pipeline.query import query_sections
from renderers import RENDERERS
from renderers.csv_export import export_csv
from renderers.job import RenderJob
from tenantdb import FORMULA_STARTS
from tests.renderers.conftest import HOSTILE, ROWS, SEED_COLUMNS, pdf_text

REPORT = parse_definition({
    "slug": "hostile", "title": "Hostile <data> & co", "params": {"campaign": "Campaign A"},
    "sections": [
        {"kind": "kpi", "title": "Videos", "sql": "SELECT count(*) AS value FROM videos"},
        {"kind": "table", "title": "First rows", "sql": "SELECT id, title, views, status FROM videos ORDER BY id",
         "max_rows": 30},
    ],
    "csv": {"sql": f"SELECT {', '.join(SEED_COLUMNS)} FROM videos ORDER BY id"},
})


def job(url: str, results) -> RenderJob:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    return RenderJob(definition=REPORT, results=results, params=dict(REPORT.params), tenant="Acme <Ltd>",
                     datasource_url=url, generated_at=now, period=now.date(), compress=False)


def test_the_pdf_shows_hostile_values_literally(hostile_db: str, printer, tmp_path: Path, monkeypatch) -> None:
    results = query_sections(hostile_db, REPORT, REPORT.params)
    monkeypatch.setattr("renderers.pdf.printer", lambda: printer)
    document = RENDERERS[Format.PDF](job(hostile_db, results), tmp_path)
    text = pdf_text(document.path, tmp_path)
    flat = " ".join(text.split())

    assert "Hostile <data> & co" in text and "Acme <Ltd>" in text
    assert "Videos 10,000" in " ".join(text.split())  # the KPI tile, in the default locale (en)
    for value in HOSTILE:
        if value is None:
            continue
        assert " ".join(value.split()) in flat, value
    assert "First 30 of 10,000 rows" in text
    assert "<script>alert(1)</script>" in text  # shown as text, so it never ran


def _expected_rows(url: str) -> list[list[str]]:
    """Every row as PostgreSQL's text output (what COPY writes), neutralised where it is text."""
    casts = ", ".join(f"{c}::text" for c in SEED_COLUMNS)
    text_columns = {"title", "video_url", "platform", "status", "campaign_tag", "channel_username"}
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute(f"SELECT {casts} FROM videos ORDER BY id").fetchall()
    expected = []
    for row in rows:
        cells = []
        for column, value in zip(SEED_COLUMNS, row, strict=True):
            if value is None:
                cells.append("")
            elif column in text_columns and value[:1] in FORMULA_STARTS:
                cells.append("'" + value)
            else:
                cells.append(value)
        expected.append(cells)
    return expected


def test_the_csv_round_trips_every_row_with_formulas_neutralised(hostile_db: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    written = export_csv(hostile_db, REPORT.csv.sql, {}, buffer, timeout_s=30, max_bytes=10**8)
    rows = list(csv.reader(io.StringIO(buffer.getvalue().decode("utf-8"), newline="")))

    assert written == ROWS
    assert rows[0] == SEED_COLUMNS
    assert rows[1:] == _expected_rows(hostile_db)
    by_title = {r[0]: r for r in rows[1:]}
    assert "'=HYPERLINK(\"http://x\")" in by_title and "'-2+3" in by_title and "'@SUM(A1)" in by_title
    assert "<script>alert(1)</script>" in by_title and "שלום עולם" in by_title
    # numbers stay numbers, including negative ones
    assert all(r[8].isdigit() for r in rows[1:]) and {r[10] for r in rows[1:]} >= {"0", "-1", "-12"}


def test_neutralising_can_be_turned_off(hostile_db: str) -> None:
    buffer = io.BytesIO()
    export_csv(hostile_db, "SELECT id, title FROM videos WHERE id < 13 ORDER BY id", {}, buffer,
               timeout_s=30, max_bytes=10**8, neutralise_formulas=False)
    rows = list(csv.reader(io.StringIO(buffer.getvalue().decode(), newline="")))
    assert [r[1] for r in rows[1:]] == [v or "" for v in HOSTILE]


def test_the_sqlite_path_writes_the_same_cells(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, title TEXT, n REAL)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, v, -i / 2) for i, v in enumerate(HOSTILE)])
    buffer = io.BytesIO()
    written = export_csv(f"sqlite:///{path}", "SELECT id, title, n FROM t ORDER BY id", {}, buffer,
                         timeout_s=10, max_bytes=10**8)
    rows = list(csv.reader(io.StringIO(buffer.getvalue().decode(), newline="")))
    assert written == len(HOSTILE)
    assert [r[1] for r in rows[1:]] == [("'" + v if v[:1] in FORMULA_STARTS else v) if v else "" for v in HOSTILE]
    assert [float(r[2]) for r in rows[1:]] == [-i / 2 for i in range(len(HOSTILE))]


def test_every_page_has_the_footer_with_a_hostile_title_shown_literally(
        hostile_db: str, printer, tmp_path: Path, monkeypatch) -> None:
    # Given a report whose title holds quotes, a backslash and the end of a style element, and a
    # table long enough for three pages
    title = 'Q1 "final" \\ </style><h1>x</h1> & co'
    report = parse_definition({**REPORT.model_dump(exclude_none=True), "title": title,
                               "sections": [{**REPORT.sections[1].model_dump(exclude_none=True),
                                             "max_rows": 150}]})
    results = query_sections(hostile_db, report, report.params)
    monkeypatch.setattr("renderers.pdf.printer", lambda: printer)

    # When it is printed
    document = RENDERERS[Format.PDF](
        RenderJob(definition=report, results=results, params=dict(report.params), tenant="Acme",
                  datasource_url=hostile_db, generated_at=datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("UTC")),
                  period=datetime(2026, 3, 2).date(), compress=False), tmp_path)

    # Then each page's footer names the title as written and "page N of M"
    pages = pdf_text(document.path, tmp_path).split("\f")[:-1]
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        lines = [" ".join(line.split()) for line in page.splitlines() if line.strip()]
        assert f"page {number} of {len(pages)}" in lines, lines[-3:]
        assert " ".join(title.split()) in lines, lines[-3:]
