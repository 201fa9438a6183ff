"""XLSX: the csv query's rows as typed cells, streamed from PostgreSQL and SQLite data sources,
read back with openpyxl as a spreadsheet would; split at Excel's row limit; sent by e-mail."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import psycopg
import pytest
from sqlmodel import Session

from admin.reports import view as rv
from models.db import session_scope
from models.definition import parse_definition
from models.errors import QueryError
from pipeline.in_process import run_in_process
from renderers.xlsx_export import ROWS_PER_SHEET, XLSX_MEDIA_TYPE, export_xlsx
from tests.admin.test_reports_page import World, errors, reports_page, world  # noqa: F401
from tests.delivery.conftest import (  # noqa: F401 - fixtures
    REPORT,
    fast_retries,
    mail_sink,
    make_schedule,
    source_rows,
    videos_db,
    videos_file,
)
from tests.delivery.servers import MailSink
from tests.delivery.test_deliver_stage import manual_run, state
from tests.seeding import add_tenant, save_report

NEW_YORK = ZoneInfo("America/New_York")
FORMULA_LIKE = ['=HYPERLINK("http://attacker.example","click")', "=1+1", "-2+3", "+1 555",
                "@SUM(A1)", "{=A1}",
                # shaped like XlsxWriter's own rich-text XML, which it would copy in unescaped
                '<r><t>x</t></r></is></c><c r="Z2"><f>1+1</f></c><c r="Y2" t="inlineStr"><is><r><t>y</t></r>']


def read(path: Path | bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(path) if isinstance(path, bytes) else path)


def cells(sheet) -> list[list]:
    return [[c.value for c in row] for row in sheet.iter_rows()]


@pytest.fixture(params=["sqlite", "postgresql"])
def table_source(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Sequence[str]], str]:
    """A factory: a data source of either kind whose table `t (id, title)` holds `titles` in
    order; returns its URL (for PostgreSQL, a role that may only read)."""

    def make(titles: Sequence[str]) -> str:
        rows = list(enumerate(titles))
        if request.param == "sqlite":
            path = tmp_path / f"source-{len(list(tmp_path.iterdir()))}.db"
            with sqlite3.connect(path) as conn:
                conn.execute("CREATE TABLE t (id integer PRIMARY KEY, title text)")
                conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
            conn.close()
            return f"sqlite:///{path}"
        db = request.getfixturevalue("create_tenant_database")()
        with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, title text)")
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return db.url

    return make


def export(url: str, sql: str, path: Path, **options) -> int:
    return export_xlsx(url, sql, {}, path, zone=NEW_YORK, timeout_s=30, **options)


def test_postgresql_values_keep_their_types(create_tenant_database, tmp_path: Path) -> None:
    # Given a query returning one value of each common PostgreSQL type
    url = create_tenant_database().url
    sql = """SELECT 42::int AS n_int, 9007199254740993::bigint AS n_huge, 1.5::float8 AS n_float,
        12345.678::numeric(12, 3) AS n_numeric, 'NaN'::numeric AS n_nan, date '2026-03-08' AS day,
        timestamptz '2026-03-08 12:00:00+00' AS at, timestamp '2026-03-08 12:00' AS local_at,
        'plain text' AS label, NULL::text AS nothing, true AS flag, time '07:30' AS clock,
        interval '30 hours' AS took, '\\x01ff'::bytea AS raw, '{"a": [1]}'::jsonb AS doc"""

    # When it is exported for a tenant in New York
    assert export(url, sql, tmp_path / "types.xlsx") == 1

    # Then numbers are numbers, times are Excel dates, and the header is the column names
    sheet = read(tmp_path / "types.xlsx")["Data"]
    header, row = list(sheet.iter_rows())
    assert [c.value for c in header] == ["n_int", "n_huge", "n_float", "n_numeric", "n_nan", "day",
                                         "at", "local_at", "label", "nothing", "flag", "clock",
                                         "took", "raw", "doc"]
    got = {h.value: (c.value, c.data_type, c.number_format) for h, c in zip(header, row, strict=True)}
    assert got == {
        "n_int": (42, "n", "General"),
        "n_huge": ("9007199254740993", "s", "General"),   # beyond 2**53: text, every digit kept
        "n_float": (1.5, "n", "General"),
        "n_numeric": (12345.678, "n", "General"),
        "n_nan": ("NaN", "s", "General"),
        "day": (datetime(2026, 3, 8), "d", "yyyy-mm-dd"),
        # 12:00 UTC is 08:00 in New York, which moved to daylight time that morning
        "at": (datetime(2026, 3, 8, 8, 0), "d", "yyyy-mm-dd hh:mm:ss"),
        "local_at": (datetime(2026, 3, 8, 12, 0), "d", "yyyy-mm-dd hh:mm:ss"),
        "label": ("plain text", "s", "General"),
        "nothing": (None, "n", "General"),
        "flag": (True, "b", "General"),
        "clock": (time(7, 30), "d", "hh:mm:ss"),
        "took": (timedelta(hours=30), "d", "[h]:mm:ss"),
        "raw": ("\\x01ff", "s", "General"),
        "doc": (json.dumps({"a": [1]}), "s", "General"),
    }


def test_sqlite_values_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "types.db"
    sqlite3.connect(path).close()
    sql = ("SELECT 42 AS n_int, 9007199254740993 AS n_huge, 1.5 AS n_float, 'plain text' AS label, "
           "NULL AS missing, x'01ff' AS raw, '2026-03-08' AS day")

    assert export(f"sqlite:///{path}", sql, tmp_path / "types.xlsx") == 1

    [_, row] = read(tmp_path / "types.xlsx")["Data"].iter_rows()
    assert [(c.value, c.data_type) for c in row] == [
        (42, "n"), ("9007199254740993", "s"), (1.5, "n"), ("plain text", "s"), (None, "n"),
        ("\\x01ff", "s"),
        ("2026-03-08", "s"),  # SQLite has no date type: a date is text, and stays text
    ]


def test_formula_looking_text_stays_text(table_source, tmp_path: Path) -> None:
    url = table_source(FORMULA_LIKE)

    export(url, "SELECT id, title FROM t ORDER BY id", tmp_path / "f.xlsx")

    sheet = read(tmp_path / "f.xlsx")["Data"]
    titles = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert [c.value for c in titles] == FORMULA_LIKE  # exactly as stored, no `'` prefix
    assert {c.data_type for c in titles} == {"s"}
    assert titles[0].value.startswith("=")
    # and nothing but the two columns was written: no formula, no extra cell
    assert sheet.max_column == 2
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_rows_past_the_sheet_limit_carry_on_in_further_sheets(table_source, tmp_path: Path) -> None:
    # Given 7 rows and sheets of 3 (Excel's is 1,048,575 below the header)
    assert ROWS_PER_SHEET == 1_048_575
    url = table_source([f"Video {i}" for i in range(7)])

    written = export(url, "SELECT id, title FROM t ORDER BY id", tmp_path / "split.xlsx",
                     rows_per_sheet=3)

    # Then every row is there once, in order, on sheets that each start with the header
    book = read(tmp_path / "split.xlsx")
    assert written == 7
    assert book.sheetnames == ["Data", "Data (2)", "Data (3)"]
    sheets = [cells(book[name]) for name in book.sheetnames]
    assert all(sheet[0] == ["id", "title"] for sheet in sheets)
    assert [row for sheet in sheets for row in sheet[1:]] == [[i, f"Video {i}"] for i in range(7)]
    assert all(book[name].freeze_panes == "A2" for name in book.sheetnames)


def test_a_result_that_fills_its_sheets_exactly_adds_no_empty_sheet(table_source, tmp_path: Path) -> None:
    url = table_source([f"Video {i}" for i in range(6)])

    assert export(url, "SELECT id, title FROM t ORDER BY id", tmp_path / "six.xlsx", rows_per_sheet=3) == 6
    assert read(tmp_path / "six.xlsx").sheetnames == ["Data", "Data (2)"]

    assert export(url, "SELECT id, title FROM t WHERE id < 0", tmp_path / "none.xlsx") == 0
    assert cells(read(tmp_path / "none.xlsx")["Data"]) == [["id", "title"]]


def test_the_header_is_bold_frozen_and_filtered_and_columns_fit(table_source, tmp_path: Path) -> None:
    url = table_source(["A rather longer video title than most", "Short"])

    export(url, "SELECT id, title AS video_title FROM t ORDER BY id", tmp_path / "h.xlsx")

    sheet = read(tmp_path / "h.xlsx")["Data"]
    assert [c.font.b for c in sheet[1]] == [True, True]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:B3"
    widths = {k: round(d.width) for k, d in sheet.column_dimensions.items()}
    assert 6 <= widths["A"] <= 8               # the header "id" and one digit: the minimum
    assert 38 <= widths["B"] <= 42             # the longest title


def test_a_cell_over_excels_limit_fails_with_a_sentence(table_source, tmp_path: Path) -> None:
    url = table_source(["short", "x" * 40_000])

    with pytest.raises(QueryError) as raised:
        export(url, "SELECT id, title FROM t ORDER BY id", tmp_path / "long.xlsx")
    assert str(raised.value) == (
        "csv.sql has 40,000 characters in column 'title' of row 2, over Excel's 32,767 a cell; "
        "shorten it in the query (left(…, 32767)) or send CSV instead.")


@pytest.mark.parametrize("source", ["videos_file", "videos_db"])
def test_a_run_delivers_the_xlsx_by_email(db_url: str, source: str, request: pytest.FixtureRequest,
                                          mail_sink: MailSink) -> None:  # noqa: F811
    # Given a schedule sending only the XLSX, from a SQLite or a PostgreSQL data source
    datasource = request.getfixturevalue(source)
    schedule_id = make_schedule(datasource, emails=["anna@acme.example"], formats=("xlsx",))
    run_id = manual_run(schedule_id)

    # When its run goes through query, render and deliver
    run_in_process(run_id)

    # Then the mail carries one spreadsheet that opens, holding the csv query's rows as cells
    run, _, deliveries = state(run_id)
    assert run.status == "success", run.error
    [mail] = mail_sink.to("anna@acme.example")
    [(filename, content)] = mail.attachments().items()
    date = run.scheduled_for.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat()
    assert filename == f"video-performance-{date}.xlsx"
    [part] = mail.message.iter_attachments()
    assert part.get_content_type() == XLSX_MEDIA_TYPE
    book = read(content)
    assert book.sheetnames == ["Data"]
    rows = cells(book["Data"])
    assert rows[0] == ["title", "platform", "views", "published_at"]
    if source == "videos_db":
        expected = [[t, p, int(v), datetime.fromisoformat(d)] for t, p, v, d in source_rows(datasource)]
    else:
        expected = [[f"Video {i}", "vk", i * 10, "2026-01-02"] for i in range(5)]
    assert rows[1:] == expected
    assert deliveries["anna@acme.example"].status == "sent"


def test_herald_export_writes_an_xlsx(cli, db_url: str, videos_file: str, tmp_path: Path) -> None:  # noqa: F811
    with session_scope() as session:
        save_report(session, add_tenant(session, "acme", "Acme", "Europe/London", videos_file),
                    parse_definition(REPORT))

    result = cli("export", "--tenant", "acme", "--report", "video-performance", "--format", "xlsx",
                 "-o", tmp_path / "views.xlsx")

    assert result.exit_code == 0, result.stderr
    assert "5 rows" in result.stdout
    assert cells(read(tmp_path / "views.xlsx")["Data"])[1] == ["Video 0", "vk", 0, "2026-01-02"]
    added = cli("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                "--cron", "0 9 * * *", "--format", "xlsx", "--format", "pdf", "--json")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["formats"] == ["xlsx", "pdf"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_reports_page_makes_the_xlsx(session: Session, world: World) -> None:  # noqa: F811
    at = reports_page("vi@acme.example")

    at.button("report_make_xlsx").click().run()

    assert not errors(at)
    assert [b.label for b in at.get("download_button")] == ["Download XLSX"]
    made = at.session_state[rv.FILES]["xlsx"][1]
    today = datetime.now(UTC).date().isoformat()
    assert made.filename == f"video-performance-{today}.xlsx" and made.media_type == XLSX_MEDIA_TYPE
    with sqlite3.connect(world.data) as db:
        (count,) = db.execute("SELECT count(*) FROM videos WHERE campaign_tag = 'Campaign A'").fetchone()
    assert made.rows == count and len(cells(read(made.content)["Data"])) == count + 1
