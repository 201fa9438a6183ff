"""The History page as an editor and a viewer meet it (Streamlit's AppTest, logged in through
the form, on SQLite; the data functions it calls are tested on both backends elsewhere).

"Now" is pinned by replacing `admin.history_view.now`, the page's clock, with a fixed moment
(2026-04-10 12:00 UTC; Berlin is on summer time). The partial run is a real send now through
the pipeline in this process (a SQLite tenant data source, a real SMTP server that answers 550
for one recipient); the other runs are written as rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from admin.history import view as history_view
from models.definition import parse_definition
from models.runs import Artifact, Delivery, ReportRun
from services import members, reports, tenants
from services.access import OPERATOR, load_viewer
from services.runs import send_now
from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable, shown

# The delivery tests' fixtures: a SQLite tenant data source and a real SMTP server (aiosmtpd).
from tests.delivery.conftest import REPORT, fast_retries, mail_sink, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process
from tests.seeding import add_schedule

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
EDITOR, VIEWER = "ana@acme.example", "vera@acme.example"
GOOD, BAD = "one@acme.example", "three@acme.example"
REFUSAL = "5.1.1 no such user"
SALES = {"slug": "sales", "title": "Sales", "params": {},
         "sections": [{"kind": "kpi", "title": "Total", "sql": "SELECT 1 AS value"}]}


@pytest.fixture(autouse=True)
def page_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_view, "now", lambda: NOW)
    monkeypatch.delenv("REDIS_URL", raising=False)  # embedded: a resend runs the pipeline here


@pytest.fixture
def world(session: Session, videos_file: str, mail_sink: MailSink) -> dict[str, int]:  # noqa: F811
    """acme: "videos" sent now at NOW to GOOD and BAD (BAD answered 550: a partial run);
    "sales" with a success by Telegram a day before, a test run two days before and a failure
    40 days before. beta: one run. Ana edits acme, Vera views it."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin", videos_file)
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    reports.save_report(session, OPERATOR, acme, parse_definition(SALES))
    videos = add_schedule(session, acme, "video-performance", now=NOW,
                                     cron_expr="0 9 * * *", formats=["csv"], emails=[GOOD, BAD])
    sales = add_schedule(session, acme, "sales", now=NOW, cron_expr="0 9 * * *",
                                    emails=[GOOD])
    theirs = add_schedule(session, beta, "video-performance", now=NOW,
                                     cron_expr="0 9 * * *", emails=["b@beta.example"])
    ana = members.grant(session, OPERATOR, acme.id, EDITOR, "editor", PASSWORD).user_id
    members.grant(session, OPERATOR, acme.id, VIEWER, "viewer", PASSWORD)
    session.commit()

    def row(schedule, tenant, slot, status, channel, recipient, outcome, **fields) -> int:
        run = ReportRun(schedule_id=schedule.id, tenant_id=tenant.id, scheduled_for=slot,
                        status=status, attempts=1, **fields)
        session.add(run)
        session.flush()
        session.add(Delivery(run_id=run.id, channel=channel, recipient=recipient, status=outcome))
        return run.id

    ids = {"telegram": row(sales, acme, NOW - timedelta(days=1), "success", "telegram", "-100777",
                           "sent"),
           "test": row(sales, acme, NOW - timedelta(days=2), "success", "email", "qa@acme.example",
                       "sent", manual=True, test=True),
           "old": row(sales, acme, NOW - timedelta(days=40), "failed", "email", GOOD, "failed",
                      error="boom"),
           "theirs": row(theirs, beta, NOW, "success", "email", "b@beta.example", "sent")}
    session.commit()
    mail_sink.refuse[BAD] = (550, REFUSAL)
    ids["partial"] = send_now(session, load_viewer(session, ana), videos.id, now=NOW,
                              dispatch=in_process).run_id
    return {**ids, "videos": videos.id, "sales": sales.id}


def history_page(email: str = EDITOR, run: int | None = None) -> AppTest:
    at = log_in(new_app().run(), email)
    at.switch_page("history/page.py")
    if run is not None:
        at.query_params["run"] = str(run)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "History"
    return at


def runs(at: AppTest) -> list[int]:
    """The run ids of the table, top to bottom."""
    frames = [d.value for d in at.main.dataframe if "Slot" in d.value.columns]
    return [int(i) for i in frames[0]["Run"]] if frames else []


def deliveries(at: AppTest) -> pd.DataFrame:
    [frame] = [d.value for d in at.container(key=history_view.STORY).dataframe]
    return frame


def buttons(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


def reread(session: Session) -> Session:
    session.rollback()
    session.expire_all()
    return session


def test_filters_narrow_the_table_and_the_chart_stacks_statuses(world) -> None:
    at = history_page(VIEWER)
    # the last 30 days by default: the 40-day-old failure and beta's run are not there
    assert runs(at) == [world["partial"], world["telegram"], world["test"]]
    row = at.container(key=history_view.TABLE).dataframe[0].value.iloc[0]
    assert (row["Slot"], row["Report"], row["Kind"], row["Status"], row["Sent"], row["Failed"]) == (
        "Fri 10 Apr 2026 14:00 CEST", "Video performance", "manual", "partial", 1, 1)
    assert row["Error or reason"].startswith("1 of 2 deliveries failed: email three@acme.example: ")

    [chart] = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["mark"]["type"] == "bar"
    scale = spec["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"], strict=True))["failed"] == "#d64545"
    assert spec["encoding"]["y"]["stack"] is True

    at.selectbox(key=history_view.STATUS).select("partial").run()
    assert runs(at) == [world["partial"]]
    at.selectbox(key=history_view.STATUS).select(None).run()
    at.selectbox(key=history_view.CHANNEL).select("telegram").run()
    assert runs(at) == [world["telegram"]]
    at.selectbox(key=history_view.CHANNEL).select(None).run()
    at.text_input(key=history_view.RECIPIENT).input("THREE@").run()
    assert runs(at) == [world["partial"]]
    at.text_input(key=history_view.RECIPIENT).input("").run()
    at.selectbox(key=history_view.KIND).select("test").run()
    assert runs(at) == [world["test"]]
    at.selectbox(key=history_view.KIND).select(None).run()
    at.selectbox(key=history_view.REPORT).select("sales").run()
    assert runs(at) == [world["telegram"], world["test"]]
    at.date_input(key=history_view.DAYS).set_value((datetime(2026, 2, 1).date(),
                                                    datetime(2026, 4, 10).date())).run()
    assert runs(at) == [world["telegram"], world["test"], world["old"]]
    at.selectbox(key=history_view.SCHEDULE).select(world["videos"]).run()
    assert runs(at) == []
    assert "No runs match these filters." in shown(at.main)
    assert not at.get("vega_lite_chart")
    assert not at.exception


def test_pages_go_older_newer_and_back_to_the_first(world, monkeypatch) -> None:
    monkeypatch.setattr(history_view, "PAGE_SIZE", 2)
    at = history_page(VIEWER)
    at.date_input(key=history_view.DAYS).set_value(()).run()   # every day
    assert runs(at) == [world["partial"], world["telegram"]]
    assert at.button(key=history_view.NEWER).disabled
    at.button(key=history_view.OLDER).click().run()
    assert runs(at) == [world["test"], world["old"]]
    assert at.button(key=history_view.OLDER).disabled     # nothing older
    at.button(key=history_view.NEWER).click().run()
    assert runs(at) == [world["partial"], world["telegram"]]
    at.button(key=history_view.OLDER).click().run()
    at.button(key=history_view.FIRST).click().run()
    assert runs(at) == [world["partial"], world["telegram"]]
    at.button(key=history_view.OLDER).click().run()
    at.selectbox(key=history_view.STATUS).select("success").run()   # new filters: page one
    assert runs(at) == [world["telegram"], world["test"]]


def test_a_runs_story_shows_the_550_and_a_viewer_gets_no_resend(world) -> None:
    at = history_page(VIEWER, run=world["partial"])
    story = at.container(key=history_view.STORY)
    assert story.subheader[0].value == f"Run {world['partial']}: Video performance"
    facts = readable(story.markdown[0].value)
    assert "**Slot:** Fri 10 Apr 2026 14:00 CEST (12:00 UTC)" in facts
    assert "**Status:** partial" in facts and f"**Requested by:** {EDITOR}" in facts
    assert f"email three@acme.example: the SMTP server refused the recipient: 550 {REFUSAL}" \
        in story.code[0].value
    table = deliveries(at).set_index("Recipient")
    assert (table.loc[BAD, "Status"], table.loc[BAD, "Error"]) == (
        "failed", f"the SMTP server refused the recipient: 550 {REFUSAL}")
    assert table.loc[GOOD, "Status"] == "sent" and table.loc[GOOD, "Message-ID"].startswith("<")
    [download] = at.get("download_button")
    assert download.proto.label == "Download CSV"
    assert "Resend failed" not in buttons(at)

    at.query_params["run"] = str(world["theirs"])   # beta's run reads as nothing
    at.run()
    assert [e.value for e in at.error] == [f"No run {world['theirs']}."]
    assert "run" not in at.query_params


def test_an_editor_resends_to_the_fixed_mailbox_once(session: Session, world,
                                                     mail_sink: MailSink) -> None:  # noqa: F811
    assert [m.rcpt_tos for m in mail_sink.mails] == [[GOOD]]
    at = history_page(EDITOR, run=world["partial"])
    del mail_sink.refuse[BAD]   # the mailbox was fixed
    at.button(key=history_view.RESEND).click().run()
    assert not at.exception, at.exception
    assert [readable(s.value) for s in at.success] == [
        f"Run {world['partial']} sent again to {BAD} (email): success."]
    assert [m.rcpt_tos for m in mail_sink.mails] == [[GOOD], [BAD]]
    table = deliveries(at).set_index("Recipient")
    assert (table.loc[BAD, "Status"], table.loc[BAD, "Attempts"], table.loc[BAD, "Error"]) == (
        "sent", 2, "")
    assert "**Status:** success" in at.container(key=history_view.STORY).markdown[0].value
    assert "Resend failed" not in buttons(at)   # nothing failed is left
    reread(session)
    assert session.get(ReportRun, world["partial"]).status == "success"


def test_expired_documents_say_so_and_cannot_be_resent(session: Session, world,
                                                       mail_sink: MailSink) -> None:  # noqa: F811
    session.execute(sa.update(Artifact).where(Artifact.run_id == world["partial"])
                    .values(expires_at=NOW - timedelta(days=1)))
    session.commit()
    at = history_page(EDITOR, run=world["partial"])
    filename = reread(session).exec(select(Artifact.filename).where(
        Artifact.run_id == world["partial"], Artifact.kind == "csv")).one()
    assert f"{filename}: expired on 2026-04-09" in shown(at.container(key=history_view.STORY))
    assert not at.get("download_button")
    at.button(key=history_view.RESEND).click().run()
    assert [e.value for e in at.error] == [
        f"The documents of run {world['partial']} expired on 2026-04-09; send the schedule now "
        f"to make new ones."]
    assert len(mail_sink.mails) == 1
    assert reread(session).get(ReportRun, world["partial"]).status == "partial"


def test_a_recipient_who_unsubscribed_is_marked_in_the_runs_story(session: Session, world) -> None:
    from models.unsubscribe import unsubscribe_tokens
    from services import unsubscribe

    token = unsubscribe_tokens(session, world["videos"], [GOOD])[GOOD]
    unsubscribe.unsubscribe(session, token, NOW + timedelta(hours=1))
    session.commit()
    table = deliveries(history_page(VIEWER, run=world["partial"])).set_index("Recipient")
    assert table.loc[GOOD, "Unsubscribed"] == "Fri 10 Apr 2026 15:00 CEST"
    assert table.loc[BAD, "Unsubscribed"] == ""
    # A run whose recipients all still receive it shows no such column
    assert "Unsubscribed" not in deliveries(history_page(VIEWER, run=world["telegram"])).columns
