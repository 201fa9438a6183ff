"""Attachment names are plain: a CSV name template with a format character (U+202E turns
`{slug}\u202egpj.exe` into what reads as `…exe.jpg`) or another format's ending is refused when
the report is saved, in one sentence; and a name made from a template stored before that
check is made plain where the attachment is built."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date
from email import message_from_bytes, policy
from email.headerregistry import Address
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session

from delivery.base import Attachment, Letter
from delivery.mail import compose
from herald.demo import DEMO_REPORT
from models.base import Format
from models.definition import parse_definition, parse_definition_text
from models.errors import InvalidInput
from models.reports import Report
from models.text import plain_file_name
from renderers.csv_export import render_csv
from renderers.document import csv_filename
from renderers.xlsx_export import render_xlsx, xlsx_filename
from services import reports
from services.access import OPERATOR
from tests.seeding import add_tenant, count_rows

DEMO = yaml.safe_load(DEMO_REPORT.read_text(encoding="utf-8"))
INVISIBLE = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
             "\u061c", "\u200b", "\u200d", "\ufeff", "\u00ad"]


def with_filename(filename: str) -> dict:
    return {**DEMO, "csv": {**DEMO["csv"], "filename": filename}}


def refusal(filename: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        parse_definition(with_filename(filename))
    return str(refused.value)


@pytest.mark.parametrize("character", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_a_format_character_in_the_csv_name_is_refused(character: str) -> None:
    assert refusal(f"{{slug}}{character}vsc.{{date}}.csv") == (
        f"report: csv.filename contains the invisible character U+{ord(character):04X}, which can "
        f"make the name read differently (e.g. backwards); write it without it.")


@pytest.mark.parametrize("ending", [".exe", ".html", ".xlsx", ".pdf", ".csv.exe", ".jpg", ".zip"])
def test_another_formats_ending_is_refused(ending: str) -> None:
    assert refusal(f"{{slug}}-{{date}}{ending}") == (
        f"report: csv.filename ends in {ending[ending.rindex('.'):]}, and the CSV's name must end "
        f"in .csv (the XLSX's is made from it); write e.g. {{slug}}-{{date}}.csv.")


@pytest.mark.parametrize("filename", ["{slug}-{date}.csv", "EXPORT.CSV", "{slug}-{date}",
                                      "Отчёт {date}.csv", "{slug}.v2.csv"])
def test_plain_names_are_accepted_as_before(filename: str) -> None:
    assert parse_definition(with_filename(filename)).csv.filename == filename


def test_the_admin_and_api_save_refuses_it_and_writes_nothing(session: Session) -> None:
    tenant = add_tenant(session, "acme", "Acme")
    text = yaml.safe_dump(with_filename("{slug}\u202egpj.exe"), allow_unicode=True)
    with pytest.raises(InvalidInput) as refused:
        reports.save_report_text(session, OPERATOR, tenant.id, text, source="upload.yaml")
    assert str(refused.value) == (
        "upload.yaml: csv.filename contains the invisible character U+202E, which can make the name "
        "read differently (e.g. backwards); write it without it.")
    assert count_rows(session, Report) == 0
    with pytest.raises(InvalidInput, match=r"csv.filename ends in \.exe"):  # and without it
        parse_definition_text(text.replace("\u202e", ""))


@pytest.mark.parametrize(("made", "extension", "plain"), [
    ("video-performance\u202egpj.exe", ".csv", "video-performancegpj.exe.csv"),
    ("a\tb\r\n.csv", ".csv", "a b .csv"),
    ("../../etc/passwd", ".csv", "_.._etc_passwd.csv"),
    ("report-2026-11-22.CSV", ".csv", "report-2026-11-22.CSV"),
    ("report-2026-11-22", ".csv", "report-2026-11-22"),
    ("report.exe.xlsx", ".xlsx", "report.exe.xlsx"),
    ("report.html", ".xlsx", "report.html.xlsx"),
    ("\u202e", ".csv", "report"),
])
def test_a_name_is_made_plain_where_it_is_built(made: str, extension: str, plain: str) -> None:
    assert plain_file_name(made, extension) == plain


def stored(filename: str) -> Report:
    """A report saved before today's checks, with this CSV name template."""
    return Report(tenant_id=1, slug=DEMO["slug"], title=DEMO["title"], definition=with_filename(filename))


def test_the_csv_and_xlsx_of_a_stored_template_have_plain_names(tmp_path: Path) -> None:
    definition = stored("{slug}\u202egpj.exe").parsed()
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as db:
        db.execute("CREATE TABLE t (a INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")

    csv = render_csv(f"sqlite:///{data}", "SELECT a FROM t", {}, tmp_path,
                     csv_filename(definition, date(2026, 11, 22)), timeout_s=10, max_bytes=10_000,
                     compress_above=None)
    xlsx = render_xlsx(f"sqlite:///{data}", "SELECT a FROM t", {}, tmp_path,
                       xlsx_filename(definition, date(2026, 11, 22)), zone=UTC, timeout_s=10)

    assert (csv.filename, csv.media_type) == ("video-performancegpj.exe.csv", "text/csv")
    assert (xlsx.filename, xlsx.path.name) == ("video-performancegpj.exe.xlsx",) * 2


def test_the_mail_attachment_name_is_plain_and_ends_as_its_media_type(tmp_path: Path) -> None:
    file = tmp_path / "made.csv"
    file.write_bytes(b"a\r\n1\r\n")
    letter = Letter(run_id=1, subject="Weekly", title="Weekly", tenant="Acme", period="2026-11-22",
                    generated_at="2026-11-22 09:00 CET", summary=(),
                    attachments=(Attachment(Format.CSV, "views\u202egpj.exe", "text/csv", file),))

    raw = compose(letter, Address("Acme", addr_spec="reports@acme.example")).as_bytes()

    [attached] = message_from_bytes(raw, policy=policy.default).iter_attachments()
    assert attached.get_filename() == "viewsgpj.exe.csv"
    assert attached.get_content_type() == "text/csv"
