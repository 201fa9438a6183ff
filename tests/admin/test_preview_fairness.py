"""The admin's render threads are shared by every tenant: while one tenant's previews hang, its
next click is refused in one sentence and another tenant's preview renders in its usual time."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlmodel import Session

from admin.reports import view as rv
from models.db import get_engine
from models.definition import parse_definition
from models.errors import InvalidInput, QueryError
from models.settings import get_settings
from models.tenancy import Role
from services.access import Viewer
from services.documents import preview_report
from tests.seeding import add_tenant, save_report

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
HANGING = "SELECT pg_sleep(60)::text AS value"
TIMEOUT_S = 5


def definition(slug: str, sql: str):
    return parse_definition({"slug": slug, "title": slug.title(),
                             "sections": [{"kind": "kpi", "title": "Value", "sql": sql}]})


def click_preview(db_url: str, viewer: Viewer, report_id: int):
    """What the page's "Render preview" does, on a session of its own as each page run has."""
    with Session(get_engine(db_url), expire_on_commit=False) as session:
        return rv.on_render_thread(preview_report, session, viewer, report_id, images=False)


def wait_for_sleeping_backend(admin_url: str) -> None:
    deadline = time.monotonic() + 3
    with psycopg.connect(admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s",
                            ["%pg_sleep(60)%herald_query%"]).fetchone()[0]:
                return
            time.sleep(0.05)
    pytest.fail("the hanging preview never reached the tenant's database")


def test_one_tenants_hanging_previews_do_not_hold_up_anothers(
        db_url: str, session: Session, create_tenant_database, stub_pdf,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_QUERY_TIMEOUT_SECONDS", str(TIMEOUT_S))
    get_settings.cache_clear()
    data = create_tenant_database()
    hostile = add_tenant(session, "hostile", "Hostile", "UTC", data.url)
    other = add_tenant(session, "other", "Other", "UTC", data.url)
    hanging, _ = save_report(session, hostile, definition("hang", HANGING))
    quick_of_hostile, _ = save_report(session, hostile, definition("quick", "SELECT 1 AS value"))
    quick, _ = save_report(session, other, definition("quick", "SELECT 2 AS value"))
    session.commit()
    editor = Viewer(user_id=1, email="editor@hostile.example", roles={hostile.id: Role.EDITOR})
    neighbour = Viewer(user_id=2, email="editor@other.example", roles={other.id: Role.EDITOR})

    # Given the hostile tenant's editor clicked "Render preview" on a report that hangs
    failures: list[Exception] = []

    def first_click() -> None:
        try:
            click_preview(db_url, editor, hanging.id)
        except Exception as exc:  # noqa: BLE001 - the test reads it below
            failures.append(exc)

    hanging_preview = threading.Thread(target=first_click)
    hanging_preview.start()
    wait_for_sleeping_backend(data.admin_url)

    # When they click again, the click is refused at once, in one sentence
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"^This tenant's previews and downloads already use "
                                           r"their share of the admin's render threads \(1 at a "
                                           r"time\); wait for the render under way to finish, "
                                           r"then try again\.$"):
        click_preview(db_url, editor, hanging.id)
    assert time.monotonic() - started < 1

    # Then another tenant's preview renders in its usual time, while the hanging one still runs
    started = time.monotonic()
    preview = click_preview(db_url, neighbour, quick.id)
    assert time.monotonic() - started < 2.5
    assert preview.pdf.startswith(b"%PDF-")
    assert hanging_preview.is_alive()

    # and the hanging preview ends at the query deadline, naming it; its tenant may preview again
    hanging_preview.join(TIMEOUT_S + 5)
    assert not hanging_preview.is_alive()
    assert [type(e) for e in failures] == [QueryError]
    assert f"ran longer than the {TIMEOUT_S} s statement timeout" in str(failures[0])
    assert click_preview(db_url, editor, quick_of_hostile.id).pdf.startswith(b"%PDF-")


def test_a_previews_pdf_and_csv_queries_share_one_deadline(
        db_url: str, session: Session, create_tenant_database, stub_pdf,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a report whose PDF section and CSV query each take most of a 2 s timeout
    monkeypatch.setenv("HERALD_QUERY_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    data = create_tenant_database()
    tenant = add_tenant(session, "slow", "Slow", "UTC", data.url)
    slow = "SELECT pg_sleep(1.5)::text AS value"
    report, _ = save_report(session, tenant, parse_definition({
        "slug": "slow", "title": "Slow",
        "sections": [{"kind": "kpi", "title": "Value", "sql": slow}],
        "csv": {"sql": slow}}))
    session.commit()
    editor = Viewer(user_id=1, email="editor@slow.example", roles={tenant.id: Role.EDITOR})

    # When its preview is rendered
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"^csv\.sql ran longer than the 2 s statement timeout"):
        click_preview(db_url, editor, report.id)

    # Then the CSV's query had only what the PDF's left: the preview ends at the one deadline
    assert time.monotonic() - started < 3
