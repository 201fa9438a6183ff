"""The Reports page as a logged-in member meets it (Streamlit's AppTest, logging in through
the form): the tenant's reports and no other tenant's, the YAML saved or refused with the
field named, a preview rendered by Chromium (the PDF viewer, page images and the first CSV
rows), downloads made on request, uploads that create or update by slug, and a viewer who
can read but change nothing. A SQLite control database; the demo's SQLite data source."""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, SQLModel, select
from streamlit.testing.v1 import AppTest

import admin
from admin.reports import view as rv
from herald.demo import DEMO_REPORT, write_demo_datasource
from models.audit import ChangeEvent
from models.definition import load_definition
from models.reports import Report
from models.tenancy import Tenant
from renderers.browser import ChromiumPrinter
from tests.renderers.conftest import pdf_text
from tests.seeding import add_tenant, add_user, count_rows, save_report

# The page's behaviour does not depend on the control database's backend (the data
# functions it calls are tested on both); SQLite keeps these runs light.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

APP = Path(admin.__file__).parent / "app.py"
PASSWORD = "correct horse battery"
DEMO_YAML = DEMO_REPORT.read_text(encoding="utf-8")
BROKEN_CHART = DEMO_YAML.replace("chart: {mark: bar, x: platform, y: views}",
                                 "chart: {mark: bar, x: platform}")
CHART_Y = 'report.yaml: section 2 ("Views by platform").chart.y is required.'
CSV_SQL = load_definition(DEMO_REPORT).csv.sql


@dataclass(frozen=True)
class World:
    acme: int
    beta: int
    acme_report: int
    beta_report: int
    data: Path


@pytest.fixture
def world(session: Session, tmp_path: Path) -> World:
    """Acme and Beta read the demo's data; each has one report. Ed edits Acme and views Beta;
    Vi views Acme."""
    data = tmp_path / "tenant-data.db"
    write_demo_datasource(data, rows=120)
    url = f"sqlite:///{data}"
    acme = add_tenant(session, "acme", "Acme", "UTC", url)
    beta = add_tenant(session, "beta", "Beta", "UTC", url)
    acme_report, _ = save_report(session, acme, load_definition(DEMO_REPORT))
    beta_definition = yaml.safe_load(DEMO_YAML) | {"slug": "beta-board", "title": "Beta board"}
    beta_path = tmp_path / "beta.yaml"
    beta_path.write_text(yaml.safe_dump(beta_definition), encoding="utf-8")
    beta_report, _ = save_report(session, beta, load_definition(beta_path))
    add_user(session, "ed@acme.example", acme, "editor", PASSWORD)
    add_user(session, "ed@acme.example", beta, "viewer")
    add_user(session, "vi@acme.example", acme, "viewer", PASSWORD)
    session.commit()
    return World(acme.id, beta.id, acme_report.id, beta_report.id, data)


def reports_page(email: str, report: int | None = None) -> AppTest:
    """Log in through the form as `email` and open the Reports page (at `?report=` if given)."""
    at = AppTest.from_file(APP, default_timeout=90)
    if report is not None:
        at.query_params["report"] = str(report)
    at.run()
    at.text_input[0].input(email)
    at.text_input[1].input(PASSWORD)
    next(b for b in at.button if b.label == "Log in").click()
    at.run()
    at.switch_page("reports/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Reports"
    return at


def listed(at: AppTest) -> list[tuple[str, str]]:
    """(title, slug) of each row of the reports list."""
    frame = at.container(rv.TABLE).dataframe[0].value
    return list(zip(frame["title"], frame["slug"], strict=True))


def csv_rows(at: AppTest):
    """The preview's table of the CSV query's first rows."""
    return at.container(rv.CSV_ROWS).dataframe[0].value


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def successes(at: AppTest) -> list[str]:
    return [s.value for s in at.success]


def pdf_viewers(at: AppTest) -> list:
    """The st.pdf elements: AppTest sees them as the `streamlit-pdf` bidi component."""
    return [e for e in at.get("bidi_component") if e.proto.component_name == "streamlit-pdf.pdf_viewer"]


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}


def stored_title(session: Session, report_id: int) -> str:
    session.expire_all()
    return session.get(Report, report_id).title


def test_the_list_shows_the_tenants_reports_only(session: Session, world: World, stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    assert listed(at) == [("Video performance", "video-performance")]
    frame = at.container(rv.TABLE).dataframe[0].value
    assert list(frame.columns) == ["title", "slug", "sections", "formats", "updated"]
    assert (frame["sections"][0], frame["formats"][0]) == (3, "pdf, csv, xlsx")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", frame["updated"][0])
    pick = at.selectbox(rv.PICK)
    assert pick.options == ["Video performance (video-performance)"]
    assert pick.value == world.acme_report and at.query_params["report"] == str(world.acme_report)
    assert [t.label for t in at.tabs] == ["Definition", "Preview", "Download", "Changes"]
    assert yaml.safe_load(at.text_area(rv.DEFINITION).value)["slug"] == "video-performance"
    assert "Beta board" not in str(at.main)

    # Switching tenant in the sidebar shows Beta's report (read-only: Ed views Beta).
    at.sidebar.selectbox[0].select("beta").run()
    assert listed(at) == [("Beta board", "beta-board")]
    assert at.selectbox(rv.PICK).value == world.beta_report
    assert at.query_params["report"] == str(world.beta_report)
    assert yaml.safe_load(at.text_area(rv.DEFINITION).value)["slug"] == "beta-board"
    assert at.text_area(rv.DEFINITION).disabled and rv.SAVE not in [b.key for b in at.button]


def test_a_bookmarked_report_opens_and_another_tenants_is_ignored(session: Session, world: World,
                                                                 stub_pdf) -> None:
    second, _ = save_report(session, session.get(Tenant, world.acme), load_definition(DEMO_REPORT)
                            .model_copy(update={"slug": "second", "title": "Second"}))
    session.commit()
    at = reports_page("vi@acme.example", report=world.acme_report)  # not the first listed
    assert listed(at) == [("Second", "second"), ("Video performance", "video-performance")]
    assert at.selectbox(rv.PICK).value == world.acme_report
    assert yaml.safe_load(at.text_area(rv.DEFINITION).value)["title"] == "Video performance"
    at.selectbox(rv.PICK).select(second.id).run()
    assert at.query_params["report"] == str(second.id)
    assert yaml.safe_load(at.text_area(rv.DEFINITION).value)["title"] == "Second"

    # Beta's report id in the URL of a member of Acme only: Acme's first report is shown.
    at = reports_page("vi@acme.example", report=world.beta_report)
    assert at.selectbox(rv.PICK).value == second.id
    assert at.query_params["report"] == str(second.id)
    assert "beta-board" not in at.text_area(rv.DEFINITION).value and "Beta board" not in str(at.main)


def test_a_broken_report_names_the_field_and_changes_nothing(session: Session, world: World,
                                                             stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    before = row_counts(session)

    # Uploaded as a file: the error names the file and the field.
    at.get("file_uploader")[0].set_value(("broken.yaml", BROKEN_CHART.encode(), "application/x-yaml"))
    at.button(rv.UPLOAD_SAVE).click().run()
    assert errors(at) == [CHART_Y.replace("report.yaml", "broken.yaml")]
    assert not successes(at) and listed(at) == [("Video performance", "video-performance")]

    # Pasted, under a new slug: refused the same way, nothing created.
    at.get("file_uploader")[0].clear()
    at.text_area(rv.NEW_TEXT).input(BROKEN_CHART.replace("slug: video-performance", "slug: other"))
    at.button(rv.UPLOAD_SAVE).click().run()
    assert errors(at) == [CHART_Y]
    assert listed(at) == [("Video performance", "video-performance")]

    # Edited in the Definition tab: refused, and the edited text stays for fixing.
    at.text_area(rv.DEFINITION).input(BROKEN_CHART.replace("title: Video performance",
                                                           "title: Never saved", 1))
    at.button(rv.SAVE).click().run()
    assert errors(at) == [CHART_Y]
    assert "title: Never saved" in at.text_area(rv.DEFINITION).value
    assert listed(at) == [("Video performance", "video-performance")]

    # SQL that is not one SELECT is refused naming its field, as `herald report add` does.
    at.text_area(rv.DEFINITION).input(DEMO_YAML.replace(
        "sql: SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign",
        "sql: SELECT sum(views) AS value FROM videos; DELETE FROM videos"))
    at.button(rv.SAVE).click().run()
    assert len(errors(at)) == 1 and errors(at)[0].startswith(
        'report.yaml: section 1 ("Total views").sql holds more than one SQL statement; ')

    at.text_area(rv.NEW_TEXT).input("").run()  # nothing chosen, nothing pasted
    at.button(rv.UPLOAD_SAVE).click().run()
    assert errors(at) == ["Nothing to save: choose a .yaml file or paste a report's YAML first."]

    assert row_counts(session) == before
    assert stored_title(session, world.acme_report) == "Video performance"
    assert not at.exception


def test_a_valid_edit_saves_and_the_list_shows_the_new_title(session: Session, world: World,
                                                             stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    text = at.text_area(rv.DEFINITION).value
    at.text_area(rv.DEFINITION).input(text.replace("title: Video performance", "title: Views, weekly", 1))
    at.button(rv.SAVE).click().run()
    assert not at.exception and not errors(at)
    assert successes(at) == ["Report video-performance updated."]
    assert listed(at) == [("Views, weekly", "video-performance")]
    assert at.selectbox(rv.PICK).options == ["Views, weekly (video-performance)"]
    assert stored_title(session, world.acme_report) == "Views, weekly"
    event = session.exec(select(ChangeEvent).order_by(ChangeEvent.id.desc())).first()
    assert (event.object_id, event.action, event.actor) == (world.acme_report, "updated",
                                                            "ed@acme.example")
    assert "title: Views, weekly" in at.text_area(rv.DEFINITION).value
    at.run()
    assert not successes(at)  # the result is said once


def test_an_upload_creates_a_new_slug_and_updates_a_known_one(session: Session, world: World,
                                                              stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    at.text_area(rv.NEW_TEXT).input(DEMO_YAML.replace("slug: video-performance", "slug: views-copy")
                                    .replace("title: Video performance", "title: Copy"))
    at.button(rv.UPLOAD_SAVE).click().run()
    assert successes(at) == ["Report views-copy created."]
    assert listed(at) == [("Video performance", "video-performance"), ("Copy", "views-copy")]
    copy = session.exec(select(Report).where(Report.slug == "views-copy")).one()
    assert at.selectbox(rv.PICK).value == copy.id  # the new report is shown
    assert at.query_params["report"] == str(copy.id)
    assert at.text_area(rv.NEW_TEXT).value == ""  # the pasted text is cleared after saving

    at.get("file_uploader")[0].set_value(
        ("video-performance.yml", DEMO_YAML.replace("title: Video performance", "title: Uploaded")
         .encode(), "application/x-yaml"))
    at.button(rv.UPLOAD_SAVE).click().run()
    assert successes(at) == ["Report video-performance updated."]
    assert listed(at) == [("Uploaded", "video-performance"), ("Copy", "views-copy")]
    assert at.selectbox(rv.PICK).value == world.acme_report
    assert len(session.exec(select(Report).where(Report.tenant_id == world.acme)).all()) == 2

    at.get("file_uploader")[0].set_value(("latin1.yaml", "title: Caf\xe9".encode("latin-1"),
                                          "application/x-yaml"))
    at.button(rv.UPLOAD_SAVE).click().run()
    assert errors(at) == ["latin1.yaml is not UTF-8 text; save it as UTF-8 and upload it again."]


def test_the_preview_shows_the_pdf_and_the_first_csv_rows(session: Session, world: World, real_pdf,
                                                          tmp_path: Path, monkeypatch) -> None:
    """Real Chromium (RENDER_PDF_STUB=false): the PDF carries the tenant's own figures."""
    printed_on = []
    print_pdf = ChromiumPrinter.print_pdf

    def spy(self, *args, **kwargs):
        printed_on.append(threading.current_thread().name)
        return print_pdf(self, *args, **kwargs)

    monkeypatch.setattr(ChromiumPrinter, "print_pdf", spy)
    at = reports_page("vi@acme.example")
    assert not pdf_viewers(at) and len(at.dataframe) == 1  # opening the page renders nothing
    before = row_counts(session)

    at.button(rv.PREVIEW).click().run()
    assert not at.exception and not errors(at)
    (viewer,) = pdf_viewers(at)
    assert viewer.key == rv.PDF and '"height": "700"' in viewer.proto.json
    assert re.search(r'"file": "[^"]+\.pdf"', viewer.proto.json)
    assert not at.image
    pdf = at.session_state[rv.PREVIEWED][2].pdf
    with sqlite3.connect(world.data) as db:
        (total_views,) = db.execute(
            "SELECT sum(views) FROM videos WHERE campaign_tag = 'Campaign A'").fetchone()
        cursor = db.execute(CSV_SQL, {"campaign": "Campaign A"})
        columns, rows = [d[0] for d in cursor.description], cursor.fetchall()
    text = re.sub(r"[\u202f\u00a0]", " ", pdf_text(pdf, tmp_path))
    assert "Video performance" in text and f"{total_views:,}" in text
    assert "RENDER_PDF_STUB" not in text and "Top videos" in text

    table = csv_rows(at)
    assert list(table.columns) == columns and len(table) == 20 < len(rows)
    assert list(table["title"]) == [row[0] for row in rows[:20]]
    assert f"CSV: first 20 of {len(rows)} rows" in [c.value for c in at.caption]

    # Page images instead of the viewer: one PNG per page, rendered again with images.
    at.toggle(rv.PREVIEW_IMAGES).set_value(True).run()
    assert not at.exception and not pdf_viewers(at)
    assert len(at.image) >= 1 and at.image[0].captions[0].startswith("Page 1 of ")
    assert at.session_state[rv.PREVIEWED][2].pages
    assert len(csv_rows(at)) == 20

    at.toggle(rv.PREVIEW_IMAGES).set_value(False).run()
    assert len(pdf_viewers(at)) == 1 and not at.image
    assert row_counts(session) == before  # nothing stored, nothing sent
    # Each script run is a new thread; the renders ran on the page's long-lived render threads
    # (whose browsers stay warm), not on those (which would each leave a browser behind).
    assert len(printed_on) == 3 and all(n.startswith("herald-admin-render") for n in printed_on)


def test_downloads_appear_after_generating(session: Session, world: World, stub_pdf) -> None:
    at = reports_page("vi@acme.example")
    assert not at.get("download_button")  # opening the page makes no document
    before = row_counts(session)
    today = datetime.now(UTC).date().isoformat()

    at.button(rv.MAKE["pdf"]).click().run()
    assert not errors(at)
    assert [b.label for b in at.get("download_button")] == ["Download PDF"]
    at.button(rv.MAKE["csv"]).click().run()
    assert [b.label for b in at.get("download_button")] == ["Download PDF", "Download CSV"]
    made = at.session_state[rv.FILES]
    assert made["pdf"][1].content.startswith(b"%PDF-")
    assert made["pdf"][1].filename == f"video-performance-{today}.pdf"
    csv = made["csv"][1]
    assert csv.filename == f"video-performance-{today}.csv" and csv.media_type == "text/csv"
    with sqlite3.connect(world.data) as db:
        (count,) = db.execute("SELECT count(*) FROM videos WHERE campaign_tag = 'Campaign A'").fetchone()
    assert csv.rows == count and len(csv.content.decode().splitlines()) == count + 1
    captions = [c.value for c in at.caption]
    assert any(c.startswith(f"video-performance-{today}.csv: ") and c.endswith(f", {count} rows")
               for c in captions)

    at.get("download_button")[1].click().run()  # downloading keeps both on the page
    assert len(at.get("download_button")) == 2
    assert row_counts(session) == before


def test_a_viewer_can_read_but_change_nothing(session: Session, world: World, stub_pdf) -> None:
    at = reports_page("vi@acme.example")
    assert listed(at) == [("Video performance", "video-performance")]
    definition = at.text_area(rv.DEFINITION)
    assert definition.disabled and yaml.safe_load(definition.value)["title"] == "Video performance"
    keys = {b.key for b in at.button}
    assert rv.SAVE not in keys and rv.UPLOAD_SAVE not in keys
    assert "Save" not in [b.label for b in at.button]
    assert not at.get("file_uploader") and rv.NEW_TEXT not in [t.key for t in at.text_area]
    assert "Upload / New report" not in [s.value for s in at.subheader]
    assert "Read-only: your role in Acme is viewer; editors and admins change reports." in [
        c.value for c in at.caption]

    before = row_counts(session)
    at.button(rv.PREVIEW).click().run()  # reading is allowed
    assert not errors(at) and len(csv_rows(at)) == 20
    assert row_counts(session) == before
    assert stored_title(session, world.acme_report) == "Video performance"


def test_a_tenant_without_reports_says_so(session: Session, world: World, stub_pdf) -> None:
    gamma = add_tenant(session, "gamma", "Gamma", "UTC", f"sqlite:///{world.data}")
    add_user(session, "ga@gamma.example", gamma, "admin", PASSWORD)
    session.commit()
    at = reports_page("ga@gamma.example")
    assert [i.value for i in at.info] == ["Gamma has no reports yet. Upload a report file below."]
    assert rv.PICK not in [s.key for s in at.selectbox] and not at.tabs
    at.text_area(rv.NEW_TEXT).input(DEMO_YAML)
    at.button(rv.UPLOAD_SAVE).click().run()
    assert successes(at) == ["Report video-performance created."]
    assert listed(at) == [("Video performance", "video-performance")]
