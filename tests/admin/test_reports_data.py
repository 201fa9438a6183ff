"""The reports page's data functions: each role may do what it may, another tenant's reports
read as missing, saves are validated like `herald report add` and write nothing on error,
and previews and downloads show the tenant's real data. SQLite and PostgreSQL control
databases; a SQLite tenant data source (the demo's)."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, SQLModel, select

from herald.demo import DEMO_REPORT, write_demo_datasource
from models.audit import ChangeEvent
from models.definition import load_definition, parse_definition_text
from models.errors import InvalidInput, NotFound, PermissionDenied
from models.reports import Report
from models.tenancy import Membership, Role, User
from services import documents, reports
from services.access import Viewer, load_viewer
from tenantdb import neutralise
from tests.renderers.conftest import pdf_text
from tests.seeding import add_tenant, count_rows, save_report

DEMO_YAML = DEMO_REPORT.read_text(encoding="utf-8")
CSV_SQL = load_definition(DEMO_REPORT).csv.sql
BROKEN_CHART = DEMO_YAML.replace("chart: {mark: bar, x: platform, y: views}", "chart: {mark: bar, x: platform}")
TWO_STATEMENTS = DEMO_YAML.replace(
    "sql: SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign",
    "sql: SELECT sum(views) AS value FROM videos; SELECT 1 AS value")


@dataclass(frozen=True)
class World:
    """Two tenants with the demo report each; acme has a member of every role."""

    acme: int
    beta: int
    acme_report: int
    beta_report: int
    users: dict[Role, int]
    data: Path


@pytest.fixture
def world(session: Session, tmp_path: Path) -> World:
    data = tmp_path / "tenant-data.db"
    write_demo_datasource(data, rows=120)
    url = f"sqlite:///{data}"
    acme = add_tenant(session, "acme", "Acme", "UTC", url)
    beta = add_tenant(session, "beta", "Beta", "UTC", url)
    definition = load_definition(DEMO_REPORT)
    acme_report, _ = save_report(session, acme, definition)
    beta_report, _ = save_report(session, beta, definition)
    users = {}
    for role in Role:
        user = User(email=f"{role}@acme.example", password_hash="x")
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, tenant_id=acme.id, role=role))
        users[role] = user.id
    session.commit()
    return World(acme.id, beta.id, acme_report.id, beta_report.id, users, data)


def viewer_as(session: Session, world: World, role: Role) -> Viewer:
    return load_viewer(session, world.users[role])


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}


def source_rows(data: Path, limit: int | None = None) -> tuple[list[str], list[list]]:
    """The CSV query's columns and rows, read from the data source with sqlite3 directly."""
    with sqlite3.connect(data) as db:
        cursor = db.execute(CSV_SQL + (f" LIMIT {limit}" if limit else ""), {"campaign": "Campaign A"})
        return [d[0] for d in cursor.description], [list(row) for row in cursor]


def today_names(suffix: str) -> set[str]:
    return {f"video-performance-{datetime.now(UTC).date().isoformat()}.{suffix}"}


@pytest.mark.parametrize("role", list(Role))
def test_every_role_and_action(session: Session, world: World, stub_pdf, role: Role) -> None:
    viewer = viewer_as(session, world, role)

    listed = reports.list_reports(session, viewer, world.acme)
    assert [(r.id, r.slug, r.title, r.sections, r.formats) for r in listed] == [
        (world.acme_report, "video-performance", "Video performance", 3, ("pdf", "csv", "xlsx"))]
    assert listed[0].updated_at.tzinfo is not None

    text = reports.report_yaml(session, viewer, world.acme_report)
    assert list(yaml.safe_load(text)) == ["slug", "title", "params", "sections", "csv", "locale"]

    edited = text.replace("title: Video performance", f"title: Edited by {role}", 1)
    if role == Role.VIEWER:
        before = row_counts(session)
        with pytest.raises(PermissionDenied, match="^Your role in this tenant is viewer; to edit you "
                                                   "need to be editor or admin. Ask a tenant admin.$"):
            reports.save_report_text(session, viewer, world.acme, edited)
        assert row_counts(session) == before
    else:
        saved = reports.save_report_text(session, viewer, world.acme, edited, report_id=world.acme_report)
        session.commit()
        assert saved == reports.SavedReport(world.acme_report, "video-performance",
                                            f"Edited by {role}", created=False)
        event = session.exec(select(ChangeEvent).order_by(ChangeEvent.id.desc())).first()
        assert (event.object_id, event.action, event.actor) == (world.acme_report, "updated",
                                                                f"{role}@acme.example")

    preview = documents.preview_report(session, viewer, world.acme_report)
    assert preview.pdf.startswith(b"%PDF-") and preview.pages and preview.csv_rows

    download = documents.download_report(session, viewer, world.acme_report, "csv")
    assert download.filename in today_names("csv") and download.media_type == "text/csv"


@pytest.mark.parametrize("role", list(Role))
def test_another_tenants_report_reads_as_missing(session: Session, world: World, stub_pdf,
                                                 role: Role) -> None:
    viewer = viewer_as(session, world, role)
    theirs = world.beta_report
    missing = f"^No report {theirs}.$"
    before = row_counts(session)
    with pytest.raises(NotFound, match=missing):
        reports.report_yaml(session, viewer, theirs)
    with pytest.raises(NotFound, match=missing):
        documents.preview_report(session, viewer, theirs)
    for fmt in ("pdf", "csv"):
        with pytest.raises(NotFound, match=missing):
            documents.download_report(session, viewer, theirs, fmt)
    with pytest.raises(NotFound, match="^No report 999999.$"):
        reports.report_yaml(session, viewer, 999999)
    with pytest.raises(NotFound, match="^No such tenant among yours.$"):
        reports.list_reports(session, viewer, world.beta)
    with pytest.raises(NotFound, match="^No such tenant among yours.$"):
        reports.save_report_text(session, viewer, world.beta, DEMO_YAML)
    if role != Role.VIEWER:
        with pytest.raises(NotFound, match=missing):
            reports.save_report_text(session, viewer, world.acme, DEMO_YAML, report_id=theirs)
    assert row_counts(session) == before


def test_a_new_report_is_created_and_its_yaml_round_trips(session: Session, world: World) -> None:
    editor = viewer_as(session, world, Role.EDITOR)
    text = DEMO_YAML.replace("slug: video-performance", "slug: views-copy")
    saved = reports.save_report_text(session, editor, world.acme, text)
    session.commit()
    assert saved.created and saved.slug == "views-copy"
    assert [r.slug for r in reports.list_reports(session, editor, world.acme)] == [
        "video-performance", "views-copy"]
    event = session.exec(select(ChangeEvent).where(ChangeEvent.object_id == saved.id,
                                                   ChangeEvent.object_type == "report")).one()
    assert (event.action, event.actor) == ("created", "editor@acme.example")

    text = reports.report_yaml(session, editor, saved.id)
    assert text.startswith("slug: views-copy\ntitle: Video performance\nparams:\n")
    assert parse_definition_text(text, "edit") == session.get(Report, saved.id).parsed()
    # Saving the text unchanged is an update that changes nothing.
    again = reports.save_report_text(session, editor, world.acme, text, report_id=saved.id)
    assert not again.created and again.id == saved.id


def test_multiline_sql_is_shown_as_a_block(session: Session, world: World) -> None:
    admin = viewer_as(session, world, Role.ADMIN)
    text = DEMO_YAML.replace("slug: video-performance", "slug: multi").replace(
        "sql: SELECT title, platform, views FROM videos ORDER BY views DESC LIMIT 50",
        "sql: |\n      SELECT title, platform, views\n      FROM videos\n      ORDER BY views DESC LIMIT 50")
    saved = reports.save_report_text(session, admin, world.acme, text)
    shown = reports.report_yaml(session, admin, saved.id)
    assert "sql: |\n      SELECT title, platform, views\n      FROM videos\n" in shown
    assert parse_definition_text(shown) == session.get(Report, saved.id).parsed()


def test_a_broken_field_is_named_and_nothing_is_written(session: Session, world: World) -> None:
    editor = viewer_as(session, world, Role.EDITOR)
    before, stored = row_counts(session), session.get(Report, world.acme_report).definition
    with pytest.raises(InvalidInput,
                       match=r'^report\.yaml: section 2 \("Views by platform"\)\.chart\.y is required\.$'):
        reports.save_report_text(session, editor, world.acme, BROKEN_CHART)
    with pytest.raises(InvalidInput, match=r"^upload\.yml: is not valid YAML at line 2; "):
        reports.save_report_text(session, editor, world.acme, "slug: a\n  title: [", source="upload.yml")
    with pytest.raises(InvalidInput, match=r"^report\.yaml: a report file must be a YAML mapping"):
        reports.save_report_text(session, editor, world.acme, "")
    with pytest.raises(InvalidInput, match=r"^report\.yaml: slug must stay 'video-performance' when "
                                           r"editing that report; upload the text as a new report"):
        reports.save_report_text(session, editor, world.acme,
                                 DEMO_YAML.replace("slug: video-performance", "slug: renamed"),
                                 report_id=world.acme_report)
    assert row_counts(session) == before
    assert session.get(Report, world.acme_report).definition == stored


def test_sql_of_two_statements_is_refused_naming_the_field(session: Session, world: World) -> None:
    admin = viewer_as(session, world, Role.ADMIN)
    before = row_counts(session)
    with pytest.raises(InvalidInput, match=r'^report\.yaml: section 1 \("Total views"\)\.sql holds more '
                                           r"than one SQL statement; a report query must be exactly one SELECT"):
        reports.save_report_text(session, admin, world.acme, TWO_STATEMENTS)
    with pytest.raises(InvalidInput,
                       match=r"""^report\.yaml: section 2 \("Views by platform"\)\.sql has no column 'views'"""):
        reports.save_report_text(session, admin, world.acme, DEMO_YAML.replace(
            "SELECT platform, sum(views) AS views FROM", "SELECT platform, sum(views) AS total FROM"))
    assert row_counts(session) == before


def test_preview_shows_the_tenants_data(session: Session, world: World, real_pdf, tmp_path: Path) -> None:
    viewer = viewer_as(session, world, Role.VIEWER)
    before = row_counts(session)
    preview = documents.preview_report(session, viewer, world.acme_report)
    assert row_counts(session) == before  # nothing stored

    with sqlite3.connect(world.data) as db:
        (total_views,) = db.execute("SELECT sum(views) FROM videos WHERE campaign_tag = 'Campaign A'").fetchone()
    text = re.sub(r"[\u202f\u00a0]", " ", pdf_text(preview.pdf, tmp_path))
    assert "Video performance" in text and "Total views" in text
    assert f"{total_views:,}" in text
    assert preview.pdf_filename in today_names("pdf")

    assert preview.note is None and len(preview.pages) >= 1
    for page in preview.pages:
        width, height, pixels = png_pixels(page)
        assert abs(width - 595 * 80 / 72) < 3 and abs(height - 842 * 80 / 72) < 3  # A4 at 80 dpi
        assert len(pixels) == (width * 3 + 1) * height

    columns, rows = source_rows(world.data)
    assert preview.csv_columns == columns and preview.csv_total == len(rows) > 20
    assert preview.csv_rows == rows[:20]
    assert documents.preview_report(session, viewer, world.acme_report, rows=5).csv_rows == rows[:5]


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed image data of a PNG, read with the standard library."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", png[16:24])
    chunks, at = [], 8
    while at < len(png):
        (length,), kind = struct.unpack(">I", png[at:at + 4]), png[at + 4:at + 8]
        if kind == b"IDAT":
            chunks.append(png[at + 8:at + 8 + length])
        at += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))


def test_preview_without_pdftoppm_says_so(session: Session, world: World, stub_pdf, monkeypatch) -> None:
    monkeypatch.setattr(documents.shutil, "which", lambda name: None)
    preview = documents.preview_report(session, viewer_as(session, world, Role.VIEWER), world.acme_report)
    assert preview.pdf.startswith(b"%PDF-") and preview.pages == []
    assert preview.note == "No page images: pdftoppm is not installed (apt-get install poppler-utils)."


def test_page_images_of_a_broken_pdf_say_why() -> None:
    pages, note = documents.page_images(b"not a PDF")
    assert pages == [] and re.fullmatch(r"No page images: pdftoppm failed \(.+\); the PDF itself "
                                        r"is complete\.", note)


def test_download_csv_has_every_row_and_todays_name(session: Session, world: World, real_pdf,
                                                    tmp_path: Path) -> None:
    viewer = viewer_as(session, world, Role.VIEWER)
    download = documents.download_report(session, viewer, world.acme_report, "csv")
    assert download.filename in today_names("csv") and download.media_type == "text/csv"
    columns, rows = source_rows(world.data)
    expected = [columns] + [[neutralise(v) if isinstance(v, str) else str(v) for v in row] for row in rows]
    assert list(csv.reader(io.StringIO(download.content.decode("utf-8")))) == expected
    assert download.rows == len(rows)

    pdf = documents.download_report(session, viewer, world.acme_report, "PDF")
    assert pdf.filename in today_names("pdf") and pdf.media_type == "application/pdf"
    assert "Top videos" in pdf_text(pdf.content, tmp_path)

    with pytest.raises(InvalidInput, match=r"^Unknown format 'docx'; use pdf, csv or xlsx\.$"):
        documents.download_report(session, viewer, world.acme_report, "docx")


def test_a_report_without_sections_or_csv_says_which_it_lacks(session: Session, world: World,
                                                            stub_pdf) -> None:
    admin = viewer_as(session, world, Role.ADMIN)
    csv_only = reports.save_report_text(session, admin, world.acme, (
        "slug: csv-only\ntitle: CSV only\nparams: {campaign: Campaign A}\n"
        f"csv:\n  sql: {CSV_SQL}\n"))
    (row,) = [r for r in reports.list_reports(session, admin, world.acme) if r.slug == "csv-only"]
    assert (row.sections, row.formats) == (0, ("csv", "xlsx"))
    preview = documents.preview_report(session, admin, csv_only.id)
    assert preview.pdf is None and preview.pages == [] and len(preview.csv_rows) == 20
    with pytest.raises(InvalidInput, match="^Report 'csv-only' has no sections, so it makes no PDF; "):
        documents.download_report(session, admin, csv_only.id, "pdf")

    pdf_only = reports.save_report_text(session, admin, world.acme, (
        "slug: pdf-only\ntitle: PDF only\nsections:\n"
        "  - {kind: kpi, title: Videos, sql: SELECT count(*) AS value FROM videos}\n"))
    preview = documents.preview_report(session, admin, pdf_only.id)
    assert preview.csv_total is None and preview.csv_columns == [] and preview.pages
    with pytest.raises(InvalidInput, match="^Report 'pdf-only' has no csv query; add a csv: section"):
        documents.download_report(session, admin, pdf_only.id, "csv")
