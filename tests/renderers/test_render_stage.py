"""The render stage stores each format as an artifact: named for the slot's local date,
zipped when large, chunked in the control database, purged after retention."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from models.artifacts import CHUNK_SIZE, purge_expired, read_content, run_artifact, store_artifact
from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.runs import ArtifactChunk, ReportRun
from models.settings import get_settings
from pipeline.in_process import run_in_process
from pipeline.lifecycle import create_manual_run
from tests.renderers.conftest import ROWS, SEED_COLUMNS, pdf_text
from tests.seeding import add_schedule, add_tenant, save_report

REPORT = {
    "slug": "video-performance", "title": "Video performance", "params": {"campaign": "Campaign A"},
    "sections": [
        {"kind": "kpi", "title": "Total views", "sql": "SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign"},
        {"kind": "chart", "title": "By platform", "sql": "SELECT platform, sum(views) AS views FROM videos GROUP BY platform ORDER BY 1",
         "chart": {"mark": "bar", "x": "platform", "y": "views"}},
    ],
    "csv": {"sql": f"SELECT {', '.join(SEED_COLUMNS)} FROM videos WHERE campaign_tag = :campaign ORDER BY id"},
}


@pytest.fixture
def scheduled_run(db_url: str, hostile_db: str, monkeypatch):
    """A manual run of a pdf+csv schedule in Pacific/Kiritimati (UTC+14) at 11:00 UTC."""
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    get_settings.cache_clear()
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme", "UTC", hostile_db)
        save_report(session, tenant, parse_definition(REPORT))
        schedule = add_schedule(session, tenant, "video-performance", now=utcnow(), cron_expr="0 11 * * *",
                                timezone="Pacific/Kiritimati", formats=["pdf", "csv"])
        run = create_manual_run(session, schedule, datetime(2026, 3, 1, 11, 0, tzinfo=UTC), "cli")
        return run.id


def test_a_run_renders_a_pdf_and_a_csv_named_for_the_local_date(scheduled_run: int, tmp_path: Path) -> None:
    run_in_process(scheduled_run)
    with session_scope() as session:
        pdf, table = run_artifact(session, scheduled_run, "pdf"), run_artifact(session, scheduled_run, "csv")
        # 11:00 UTC on 1 March is 01:00 on 2 March in Kiritimati
        assert (pdf.filename, table.filename) == ("video-performance-2026-03-02.pdf",
                                                  "video-performance-2026-03-02.csv")
        assert pdf.media_type == "application/pdf" and table.media_type == "text/csv"
        text = pdf_text(read_content(session, pdf), tmp_path)
        rows = list(csv.reader(io.StringIO(read_content(session, table).decode(), newline="")))
        run = session.get(ReportRun, scheduled_run)
    assert "Video performance" in text and "tiktok" in text
    assert rows[0] == SEED_COLUMNS and len(rows) - 1 == ROWS // 2 == table.rows
    assert {r[4] for r in rows[1:]} == {"Campaign A"}
    # Nobody to send to (no recipients on the schedule, no tenant fallback): failed, and says so
    assert run.status == "failed" and run.error.startswith("No recipients: the schedule names none")


def test_a_large_csv_is_zipped(scheduled_run: int, monkeypatch) -> None:
    monkeypatch.setenv("HERALD_CSV_COMPRESS_ABOVE_BYTES", "100000")
    get_settings.cache_clear()
    run_in_process(scheduled_run)
    with session_scope() as session:
        table = run_artifact(session, scheduled_run, "csv")
        content = read_content(session, table)
    assert table.filename == "video-performance-2026-03-02.csv.zip" and table.media_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.namelist() == ["video-performance-2026-03-02.csv"]
        inner = archive.read("video-performance-2026-03-02.csv")
    assert len(inner) > 100_000 and len(content) < len(inner) / 3
    assert inner.count(b"\n") >= ROWS // 2


def test_artifacts_are_chunked_and_purged_after_retention(db_url: str) -> None:
    blob = bytes(range(256)) * (CHUNK_SIZE * 5 // 2 // 256)
    now = utcnow()
    with session_scope() as session:
        stored = store_artifact(session, run_id=None, kind="csv", filename="x.csv", media_type="text/csv",
                                source=io.BytesIO(blob), now=now)
        chunks = session.execute(sa.select(sa.func.count()).select_from(ArtifactChunk)).scalar()
        assert (stored.size, chunks) == (len(blob), 3)
        assert read_content(session, stored) == blob
    retention = timedelta(days=get_settings().artifact_retention_days)
    with session_scope() as session:
        assert purge_expired(session, now + retention - timedelta(seconds=1)) == 0
        assert purge_expired(session, now + retention + timedelta(seconds=1)) == 1
        assert session.execute(sa.select(sa.func.count()).select_from(ArtifactChunk)).scalar() == 0


def test_a_csv_past_its_size_limit_fails_the_run_naming_the_limit(scheduled_run: int, monkeypatch) -> None:
    monkeypatch.setenv("HERALD_CSV_MAX_BYTES", "102400")
    get_settings.cache_clear()
    run_in_process(scheduled_run)
    with session_scope() as session:
        run = session.get(ReportRun, scheduled_run)
        assert run.status == "failed"
        assert run.error.startswith("csv.sql produced more than 100.0 KB of CSV (HERALD_CSV_MAX_BYTES) after ")
        assert run.error.endswith(" rows; narrow the query or raise the limit.")
        assert run_artifact(session, scheduled_run, "csv") is None
