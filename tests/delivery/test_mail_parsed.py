"""Every delivered e-mail, read the way a mail client reads it (`email` with `policy.default`):
each part decodes to the text herald meant, the plain-text and HTML parts state the same
facts, one line per item in plain text, and the documents open."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from delivery.base import Attachment, Letter
from delivery.mail import compose
from models.artifacts import read_content, run_artifact
from models.base import Format
from models.db import session_scope
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline.in_process import run_in_process
from tests.delivery.conftest import REPORT, csv_rows, make_schedule, source_rows, total_views
from tests.delivery.servers import BotApi, Mail, MailSink
from tests.delivery.test_deliver_stage import manual_run, state

READER = "anna@acme.example"
CHAT = "1001"
FOOTER = "Sent by herald on a schedule. Reply to the sender to change or stop it."
CSV_HEADER = ["title", "platform", "views", "published_at"]
on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Facts(NamedTuple):
    """What a reader learns from one part of the message."""

    title: str
    tenant: str
    period: str
    generated: str | None
    summary: tuple[tuple[str, str], ...]
    attached: tuple[str, ...]
    notes: tuple[str, ...]


def plain_facts(text: str) -> Facts:
    """The facts of the plain-text part (or a Telegram caption): a heading line, the period
    line, then one "label: value" line per summary item, the files and the notes."""
    lines = [line for line in text.splitlines() if line]
    title, tenant = re.fullmatch(r"(.+) \((.+)\)", lines[0]).groups()
    period, generated = re.fullmatch(r"Report for (.+?)(?:, generated (.+))?", lines[1]).groups()
    rest = lines[2:lines.index("-- ")] if "-- " in lines else lines[2:]
    attached = [i for i, line in enumerate(rest) if line.startswith("Attached: ")]
    end = attached[0] if attached else len(rest)
    summary = tuple(tuple(line.split(": ", 1)) for line in rest[:end] if ": " in line)
    files = tuple(rest[end].removeprefix("Attached: ").removesuffix(".").split(", ")) if attached else ()
    notes = tuple(rest[end + 1:]) if attached else tuple(line for line in rest if ": " not in line)
    return Facts(title, tenant, period, generated, summary, files, notes)


class _Elements(HTMLParser):
    """The visible text of each h1, div, td and strong, collapsed as a browser does, and the
    two-cell table rows (label, value)."""

    TAGS = {"h1", "div", "td", "strong", "title"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[list[str]] = []    # [tag, text] of each open element we track
        self.rows: list[list[str]] = []    # cells of each open <tr>
        self.found: list[tuple[str, str]] = []
        self.pairs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.TAGS:
            self.open.append([tag, ""])
        if tag == "tr":
            self.rows.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.TAGS:
            name, text = self.open.pop()
            assert name == tag, f"<{name}> closed by </{tag}>"
            text = re.sub(r"[ \t\r\n\f]+", " ", text).strip()  # HTML's whitespace, not U+202F
            self.found.append((tag, text))
            if tag == "td" and self.rows:
                self.rows[-1].append(text)
        if tag == "tr":
            cells = self.rows.pop()
            if len(cells) == 2:
                self.pairs.append((cells[0], cells[1]))

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element[1] += data

    def texts(self, tag: str) -> list[str]:
        return [text for name, text in self.found if name == tag]


def html_facts(html: str) -> Facts:
    """The facts of the HTML part as a reader sees them: the tenant above the heading, the
    period line under it, the summary table, the files in bold and the notes below them."""
    elements = _Elements()
    elements.feed(html)
    elements.close()
    [title] = elements.texts("h1")
    assert elements.texts("title") == [title]
    tenant, when, *notes, footer = elements.texts("div")
    assert footer == FOOTER
    period, generated = re.fullmatch(r"Report for (.+) · generated (.+)", when).groups()
    return Facts(title, tenant, period, generated, tuple(elements.pairs),
                 tuple(elements.texts("strong")), tuple(notes))


def parsed(mail: Mail) -> EmailMessage:
    """The message as it came over the wire, parsed as a mail client would; every part's
    declared transfer encoding must hold (base64 that is really base64), with no defects."""
    message = message_from_bytes(mail.raw, policy=policy.default)
    for part in message.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
        if part.is_multipart():
            continue
        cte = part["Content-Transfer-Encoding"]
        assert cte in ("base64", "quoted-printable"), (part.get_content_type(), cte)
        if cte == "base64":
            base64.b64decode("".join(part.get_payload().split()), validate=True)
        if part.get_content_maintype() == "text":
            assert part.get_content_charset() == "utf-8"
    return message


def parts(message: EmailMessage) -> tuple[str, str, dict[str, bytes]]:
    """The decoded plain text, the HTML, and each document's bytes as a mail client saves it."""
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    documents = {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}
    for part in message.iter_attachments():  # a text document also reads as the UTF-8 it says it is
        if part.get_content_maintype() == "text":
            assert part.get_content() == documents[part.get_filename()].decode()
    return plain, html, documents


def stored(run_id: int, kind: str) -> bytes:
    with session_scope() as session:
        return read_content(session, run_artifact(session, run_id, kind))


def test_the_delivered_mail_reads_the_same_in_every_part_and_its_documents_open(
    db_url: str, videos_db: str, mail_sink: MailSink, bot_api: BotApi
) -> None:
    # Given a schedule sending the PDF and the CSV to one address and one chat
    run_id = manual_run(make_schedule(videos_db, emails=[READER], chats=[CHAT]))

    run_in_process(run_id)

    # Then the e-mail parses cleanly, and its plain-text part is one line per item
    [mail] = mail_sink.to(READER)
    message = parsed(mail)
    plain, html, documents = parts(message)
    pdf_name, csv_name = sorted(documents, key=lambda name: not name.endswith(".pdf"))
    run, schedule, _ = state(run_id)
    period = run.scheduled_for.astimezone(ZoneInfo(schedule.timezone)).date().isoformat()
    lines = plain.splitlines()
    generated = re.fullmatch(rf"Report for {period}, generated (\d{{4}}-\d\d-\d\d \d\d:\d\d CES?T)",
                             lines[1])
    assert generated, lines[1]
    kpi = re.fullmatch(r"Total views: (\d{1,3}(?:[\u202f ,]\d{3})*)", lines[3])
    assert kpi and re.sub(r"\D", "", kpi[1]) == str(total_views(videos_db)), lines[3]
    assert lines == ["Video performance (Acme Corp)", lines[1], "", lines[3], "CSV rows: 150", "",
                     f"Attached: {pdf_name}, {csv_name}.", "", "-- ", FOOTER]
    assert "<" not in plain and "Total views" in plain

    # and the HTML part states exactly the same facts
    facts = plain_facts(plain)
    assert facts == Facts("Video performance", "Acme Corp", period, generated[1],
                          (("Total views", kpi[1]), ("CSV rows", "150")), (pdf_name, csv_name), ())
    assert html_facts(html) == facts

    # and the documents open: the PDF is the stored one, the CSV holds the query's rows
    assert documents[pdf_name].startswith(b"%PDF") and documents[pdf_name] == stored(run_id, "pdf")
    assert csv_rows(documents[csv_name]) == [CSV_HEADER, *source_rows(videos_db)]
    assert documents[csv_name] == stored(run_id, "csv")

    # and the Telegram caption, built separately, tells the chat the same facts
    caption = plain_facts(bot_api.to(CHAT)[0].caption)
    assert caption._replace(generated=generated[1], attached=facts.attached) == facts


@on_sqlite
def test_non_ascii_names_round_trip_in_the_subject_and_both_parts(
    db_url: str, videos_file: str, mail_sink: MailSink
) -> None:
    # Given a Cyrillic tenant name and a report title with an emoji
    title, tenant = "Видео 📈 performance", "Ромашка Медиа"
    schedule_id = make_schedule(videos_file, emails=[READER], formats=["csv"],
                                report={**REPORT, "title": title}, subject="{title} — {tenant}")
    with session_scope() as session:
        session.execute(sa.update(Tenant).values(name=tenant))

    run_in_process(run_id := manual_run(schedule_id))

    # Then the subject, the sender's name, the plain text and the HTML all read them back
    [mail] = mail_sink.to(READER)
    assert all(line.isascii() for line in mail.header_lines())  # encoded words, not raw bytes
    message = parsed(mail)
    plain, html, documents = parts(message)
    assert message["Subject"] == f"{title} — {tenant}"
    assert message["From"] == "Acme Reports <reports@acme.example>"
    assert plain.splitlines()[0] == f"{title} ({tenant})"
    facts = html_facts(html)
    assert (facts.title, facts.tenant) == (title, tenant) and facts == plain_facts(plain)
    [(name, content)] = documents.items()
    assert csv_rows(content) == [CSV_HEADER, *([f"Video {i}", "vk", str(i * 10), "2026-01-02"]
                                               for i in range(5))]
    assert state(run_id)[0].status == "success"


def test_a_csv_zipped_to_fit_says_so_in_both_parts_and_unzips_to_the_rows(
    db_url: str, videos_db: str, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a mail size limit that the CSV only fits zipped
    monkeypatch.setenv("HERALD_MAIL_MAX_BYTES", str(64 * 1024 + 6000))
    get_settings.cache_clear()
    run_id = manual_run(make_schedule(videos_db, emails=[READER], formats=["csv"]))

    run_in_process(run_id)

    # Then the e-mail carries the zip and says so in both parts
    [mail] = mail_sink.to(READER)
    plain, html, documents = parts(parsed(mail))
    [(name, content)] = documents.items()
    assert name.endswith(".csv.zip")
    assert [p.get_content_type() for p in parsed(mail).iter_attachments()] == ["application/zip"]
    facts = plain_facts(plain)
    assert facts.notes == (f"{name} is zipped to fit the size limit.",) and facts.attached == (name,)
    assert html_facts(html) == facts
    # and the zip opens to the CSV of the query's rows
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        [inner] = archive.namelist()
        assert inner == name.removesuffix(".zip")
        assert csv_rows(archive.read(inner)) == [CSV_HEADER, *source_rows(videos_db)]


def test_a_letter_without_summary_or_notes_has_no_empty_items(tmp_path: Path) -> None:
    # Given a letter with no KPI, one PDF whose name is not ASCII, and a note
    pdf = tmp_path / "Отчёт.pdf"
    pdf.write_bytes(b"%PDF-1.7\n\xe2\xe3\xcf\xd3\n%%EOF\n")
    letter = Letter(run_id=1, subject="Weekly — 2026-11-22", title="Weekly", tenant="Acme",
                    period="2026-11-22", generated_at="2026-11-22 09:00 CET", summary=(),
                    attachments=(Attachment(Format.PDF, pdf.name, "application/pdf", pdf),))

    raw = compose(letter, Address("Acme", addr_spec="reports@acme.example")).as_bytes()
    message = message_from_bytes(raw, policy=policy.default)

    # Then the plain text is its lines and nothing else, and the PDF arrives byte for byte
    plain, html, documents = parts(message)
    assert plain.splitlines() == ["Weekly (Acme)", "Report for 2026-11-22, generated 2026-11-22 09:00 CET",
                                  "", "Attached: Отчёт.pdf.", "", "-- ", FOOTER]
    assert html_facts(html) == plain_facts(plain)
    assert documents == {"Отчёт.pdf": pdf.read_bytes()}
    assert all(not part.defects for part in message.walk())
