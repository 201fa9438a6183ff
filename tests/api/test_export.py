"""Export over HTTP: the same documents as `herald export` of the same report and period (the
PDF's pages and text, the CSV's rows, the XLSX's cells), streamed with the right headers; a
1,000,000-row CSV in flat memory; a client that goes away stops the query."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from pathlib import Path

import httpx
import openpyxl
import psycopg
import pytest
from sqlalchemy.engine import make_url

from models.db import session_scope
from models.definition import parse_definition
from tests.api.conftest import Api, World, start_api, stop_api, token_for
from tests.seeding import add_tenant, save_report

PERIOD = {"period_start": "2026-01-01", "period_end": "2026-02-01"}
GENERATED = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? \w+")


def cli_export(cli, fmt: str, target: Path) -> None:
    result = cli("export", "--tenant", "acme", "--report", "video-performance", "--format", fmt,
                 "-o", target, "--period-start", PERIOD["period_start"],
                 "--period-end", PERIOD["period_end"])
    assert result.exit_code == 0, result.stderr


def pdf_text(path: Path) -> list[str]:
    """Each page's text, the moment it was generated left out."""
    pages = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                           text=True, check=True).stdout.split("\f")
    return [GENERATED.sub("generated …", page) for page in pages]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_format_is_what_herald_export_makes(cli, world: World, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "false")  # Chromium prints the PDF
    api = start_api(tmp_path)
    try:
        client = api.client(world.token("reports.read"))
        for fmt, media_type in (("csv", "text/csv"), ("xlsx", "application/vnd.openxmlformats-"
                                "officedocument.spreadsheetml.sheet"), ("pdf", "application/pdf")):
            response = client.get("/api/v1/reports/video-performance/export",
                                  params={"format": fmt, **PERIOD})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(media_type)
            disposition = response.headers["content-disposition"]
            name = re.fullmatch(r'attachment; filename="(.+)"', disposition).group(1)
            assert name.startswith("video-performance-") and name.endswith(f".{fmt}")
            (tmp_path / f"http.{fmt}").write_bytes(response.content)
            cli_export(cli, fmt, tmp_path / f"cli.{fmt}")
    finally:
        stop_api(api)

    read_csv = lambda p: list(csv.reader(io.StringIO(p.read_text())))  # noqa: E731
    assert read_csv(tmp_path / "http.csv") == read_csv(tmp_path / "cli.csv")
    assert len(read_csv(tmp_path / "http.csv")) > 1

    def cells(path: Path) -> list[list]:
        book = openpyxl.load_workbook(path, read_only=True)
        return [[list(row) for row in sheet.iter_rows(values_only=True)] for sheet in book.worksheets]

    assert cells(tmp_path / "http.xlsx") == cells(tmp_path / "cli.xlsx")
    http_pages, cli_pages = pdf_text(tmp_path / "http.pdf"), pdf_text(tmp_path / "cli.pdf")
    assert http_pages == cli_pages and "Total views" in http_pages[0]


def test_report_parameters_and_a_period_are_taken_and_checked(api: Api, world: World) -> None:
    client = api.client(world.token("reports.read"))
    url = "/api/v1/reports/video-performance/export"
    rows_a = client.get(url, params={"format": "csv"}).text.splitlines()
    rows_b = client.get(url, params={"format": "csv", "campaign": "Campaign B"}).text.splitlines()
    assert len(rows_a) == 6 and rows_b == rows_a[:1]  # every video is in Campaign A
    refusals = {
        "params.colour": client.get(url, params={"format": "csv", "colour": "red"}),
        "format": client.get(url, params={"format": "docx"}),
        "period": client.get(url, params={"format": "csv", "period_start": "2026-01-01"}),
        "date": client.get(url, params={"format": "csv", "period_start": "soon", "period_end": "later"}),
    }
    assert {k: (r.status_code, r.json()["detail"]) for k, r in refusals.items()} == {
        "params.colour": (422, "Report 'video-performance' has no parameter 'colour'; it takes: campaign."),
        "format": (422, "Unknown format 'docx'; use pdf, csv or xlsx."),
        "period": (422, "Give both period_start and period_end, or neither for the latest complete "
                        "period."),
        "date": (422, "period_start 'soon' is not an ISO date or time; write e.g. 2026-11-23 or "
                      "2026-11-23T09:00."),
    }


BIG = 1_000_000


@pytest.fixture
def big_tenant(db_url: str, create_tenant_database) -> str:
    """A PostgreSQL tenant with 1,000,000 rows, its report `big` (the CSV of all of them)."""
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute(f"CREATE TABLE big AS SELECT i AS id, md5(i::text) AS name, i * 3 AS value, "
                     f"now() AS at FROM generate_series(1, {BIG}) AS i")
    with session_scope() as session:
        tenant = add_tenant(session, "bigco", "Big Co", "UTC", db.url)
        save_report(session, tenant, parse_definition({
            "slug": "big", "title": "Big", "csv": {"sql": "SELECT id, name, value, at FROM big ORDER BY id"}}))
        save_report(session, tenant, parse_definition({  # 10^12 rows: it streams for days
            "slug": "endless", "title": "Endless", "csv": {
                "sql": "SELECT a.id AS a, b.name AS b FROM big a CROSS JOIN big b"}}))
    return db.admin_url


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_million_row_csv_streams_in_flat_memory(big_tenant: str, api: Api, world: World) -> None:
    token = token_for("bigco", "reports.read")
    rows = size = 0
    with api.client(token).stream("GET", "/api/v1/reports/big/export", params={"format": "csv"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            rows += 1
            size += len(line)
    assert rows == BIG + 1  # and the header
    assert peak_rss_mb(api.process.pid) <= 150, f"peak RSS {peak_rss_mb(api.process.pid):.0f} MB"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_client_that_goes_away_stops_the_query(big_tenant: str, api: Api, world: World) -> None:
    token = token_for("bigco", "reports.read")
    database = make_url(big_tenant).database
    admin = big_tenant.replace("+psycopg", "")

    def running() -> int:
        with psycopg.connect(admin, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                "state = 'active' AND query LIKE %s",
                                (database, "%CROSS JOIN big b%")).fetchone()[0]

    def activity() -> list[tuple]:
        with psycopg.connect(admin, autocommit=True) as conn:
            return conn.execute("SELECT state, wait_event, left(query, 120) FROM pg_stat_activity "
                                "WHERE datname = %s", (database,)).fetchall()

    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    with client.stream("GET", "/api/v1/reports/endless/export", params={"format": "csv"}) as response:
        assert response.status_code == 200
        body = response.iter_bytes()   # kept: a dropped iterator closes the stream
        next(body)
        seen = time.monotonic()
        while not running() and time.monotonic() - seen < 5:   # its row in pg_stat_activity
            time.sleep(0.05)
        assert running() == 1, activity()
    client.close()  # the connection goes: the client is gone
    gone = time.monotonic()
    while running() and time.monotonic() - gone < 5:
        time.sleep(0.05)
    assert running() == 0
    assert time.monotonic() - gone <= 1.0
