"""`herald export` writes the same documents on demand, with the report's default parameters."""

from __future__ import annotations

import csv
from pathlib import Path

from models.db import session_scope
from models.definition import parse_definition
from tests.renderers.conftest import pdf_text
from tests.renderers.test_render_stage import REPORT
from tests.seeding import add_tenant, save_report


def test_export_writes_a_pdf_and_a_csv(cli, db_url: str, hostile_db: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    with session_scope() as session:
        save_report(session, add_tenant(session, "acme", "Acme", "Europe/London", hostile_db),
                    parse_definition(REPORT))

    result = cli("export", "--tenant", "acme", "--report", "video-performance", "--format", "csv",
                 "-o", tmp_path / "out" / "views.csv")
    assert result.exit_code == 0, result.stderr
    assert "5,000 rows" in result.stdout
    with (tmp_path / "out" / "views.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 5001 and {r[4] for r in rows[1:]} == {"Campaign A"}

    result = cli("export", "--tenant", "acme", "--report", "video-performance", "--format", "pdf",
                 "-o", tmp_path / "views.pdf")
    assert result.exit_code == 0, result.stderr
    assert "Total views" in pdf_text(tmp_path / "views.pdf", tmp_path)


def test_export_refuses_unknown_format_and_report(cli, db_url: str, tmp_path: Path) -> None:
    with session_scope() as session:
        add_tenant(session, "acme", "Acme")
    bad = cli("export", "--tenant", "acme", "--report", "r", "--format", "docx", "-o", tmp_path / "x")
    assert bad.exit_code == 1 and bad.stderr == "error: Unknown format 'docx'; use pdf, csv or xlsx.\n"
    missing = cli("export", "--tenant", "acme", "--report", "nope", "--format", "csv", "-o", tmp_path / "x")
    assert missing.exit_code == 1 and "Tenant 'acme' has no report 'nope'" in missing.stderr
    assert not (tmp_path / "x").exists()
