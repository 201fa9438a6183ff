"""The Schedules page as an editor and a viewer meet it (Streamlit's AppTest, logged in through
the form, on SQLite; the data functions it calls are tested on both backends elsewhere).

"Now" is pinned by replacing `admin.schedules_view.now`, the page's clock, with a fixed moment
(2026-03-05 15:00 UTC, three days before New York's spring-forward); login keeps the real clock.
Send now runs the pipeline in this process (embedded mode: no REDIS_URL) against a SQLite
tenant data source, the stub PDF renderer and a real SMTP server.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlmodel import Session, SQLModel, select
from streamlit.testing.v1 import AppTest

from admin.schedules import view as schedules_view
from models.audit import ChangeEvent
from models.definition import parse_definition
from models.runs import Delivery, ReportRun
from models.schedules import Schedule, set_active
from models.settings import get_settings
from services import members, reports, tenants
from services.access import OPERATOR
from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable, shown

# The delivery tests' fixtures: a SQLite tenant data source and a real SMTP server (aiosmtpd).
from tests.delivery.conftest import REPORT, fast_retries, mail_sink, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.seeding import add_schedule, count_rows

on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
EDITOR, VIEWER = "ana@acme.example", "vera@acme.example"
DST_NOTE = "skipped 02:30 on 8 Mar fires at 03:00"
EDIT_BUTTONS = {"schedule_new", "schedule_edit", "schedule_pause", "schedule_resume",
                "schedule_send_now", "schedule_delete", "schedule_send_test", "form_save"}


@pytest.fixture(autouse=True)
def page_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedules_view, "now", lambda: NOW)
    monkeypatch.delenv("REDIS_URL", raising=False)  # embedded: send now runs the pipeline here
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


@pytest.fixture
def world(session: Session, videos_file: str) -> dict[str, int]:  # noqa: F811 - fixture above
    """acme (a data source, a fallback address, one schedule; Ana edits, Vera views) and beta
    (one schedule; nobody from acme)."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin", videos_file,
                              emails=["ops@acme.example"])
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    mine = add_schedule(session, acme, "video-performance", now=NOW,
                                   cron_expr="0 9 * * *", emails=["boss@acme.example"])
    theirs = add_schedule(session, beta, "video-performance", now=NOW, cadence="weekly",
                                     at="08:00", emails=["someone@beta.example"])
    members.grant(session, OPERATOR, acme.id, EDITOR, "editor", PASSWORD)
    members.grant(session, OPERATOR, acme.id, VIEWER, "viewer", PASSWORD)
    session.commit()
    return {"acme": acme.id, "mine": mine.id, "theirs": theirs.id}


def page(email: str = EDITOR) -> AppTest:
    at = log_in(new_app().run(), email)
    assert not at.exception, at.exception
    assert at.title[0].value == "Schedules"
    return at


def frame(at: AppTest, column: str) -> pd.DataFrame:
    """The table on the page that has `column` (Id: the schedules table; Run: the runs;
    What: the changes; Schedule (…): the fire times)."""
    found = [d.value for d in [*at.main.dataframe, *at.main.table] if column in d.value.columns]
    assert len(found) == 1, shown(at.main)
    return found[0]


def table_ids(at: AppTest) -> list[int]:
    if not any("Id" in d.value.columns for d in at.main.dataframe):
        return []
    return [int(i) for i in frame(at, "Id")["Id"]]


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def choose(at: AppTest, schedule_id: int) -> AppTest:
    at.selectbox(key="schedule_pick").select(schedule_id).run()
    assert not at.exception, at.exception
    assert at.query_params["schedule"] == str(schedule_id)
    return at


def buttons(at: AppTest) -> set[str]:
    return {b.key for b in at.button}


def reread(session: Session) -> Session:
    """End the test's read transaction, so its next read sees what the page committed."""
    session.rollback()
    return session


def row_counts(session: Session) -> dict[str, int]:
    """Rows of each table but `admin_session` (logging in to the page writes one)."""
    reread(session)
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables
            if t.name != "admin_session"}


def set_daily_0230_new_york(at: AppTest) -> AppTest:
    at.radio(key="form_timing").set_value("cadence")
    at.selectbox(key="form_cadence").select("daily")
    at.text_input(key="form_time").input("02:30")
    at.selectbox(key="form_timezone").select("America/New_York")
    at.run()
    assert not at.exception, at.exception
    return at


@on_sqlite
def test_an_editor_sees_their_tenants_schedules_only(world) -> None:
    at = page()
    table = frame(at, "Id")
    assert table_ids(at) == [world["mine"]]
    [row] = table.to_dict("records")
    assert row["Report"] == "Video performance" and row["Schedule"] == "At 09:00"
    assert (row["Timezone"], row["Next fire"]) == ("Europe/Berlin", "Fri 06 Mar 2026 09:00 CET")
    assert (row["Last status"], row["Recipients"], row["Formats"], row["Paused"]) == (
        "not run yet", "boss@acme.example", "pdf", False)
    assert "beta" not in shown(at.main) and "someone@beta.example" not in table.to_string()

    at.query_params["schedule"] = str(world["theirs"])  # beta's id in the URL reads as nothing
    at.run()
    assert "schedule" not in at.query_params
    assert "someone@beta.example" not in shown(at.main)

    at.text_input(key="schedules_filter").input("nobody-matches").run()
    assert table_ids(at) == []
    at.text_input(key="schedules_filter").input("boss@").run()
    assert table_ids(at) == [world["mine"]]


@on_sqlite
def test_create_with_the_live_helper_edit_pause_resume(session: Session, world) -> None:
    at = click(page(), "schedule_new")
    assert at.subheader[0].value == "New schedule"
    assert at.selectbox(key="form_timezone").value == "Europe/Berlin"  # the tenant's
    assert "tenant fallback: ops@acme.example" in shown(at.main)
    assert "At most 20 recipients" in shown(at.main)
    assert "{title} {date} {period} {tenant}" in shown(at.main)
    assert at.text_input(key="form_param.video-performance.campaign").value == "Campaign A"

    set_daily_0230_new_york(at)
    assert DST_NOTE in [i.value for i in at.info]
    fires = frame(at, "UTC")  # the fire times: the viewer's zone is UTC when the browser gives none
    assert list(fires.columns) == ["Schedule (America/New_York)", "You (UTC)", "UTC"]
    assert fires.to_dict("list")["Schedule (America/New_York)"] == [
        "Fri 06 Mar 2026 02:30 EST", "Sat 07 Mar 2026 02:30 EST", "Sun 08 Mar 2026 03:00 EDT",
        "Mon 09 Mar 2026 02:30 EDT", "Tue 10 Mar 2026 02:30 EDT"]
    assert fires["UTC"][2] == "Sun 08 Mar 2026 07:00 UTC"
    assert "At 02:30" in shown(at.main)
    assert row_counts(session)["schedule"] == 2  # nothing saved while typing

    at.multiselect(key="form_formats").set_value(["pdf", "csv"])
    at.text_area(key="form_emails").input("night@acme.example")
    at.text_input(key="form_param.video-performance.campaign").input("Campaign B")
    click(at, "form_save")
    assert not at.error, [e.value for e in at.error]
    reread(session)
    new = session.exec(select(Schedule).order_by(Schedule.id.desc())).first()
    assert new.id != world["mine"]
    assert (new.cron, new.timezone, new.formats, new.params) == (
        "30 2 * * *", "America/New_York", ["pdf", "csv"], {"campaign": "Campaign B"})
    assert [s.value for s in at.success] == [f"Schedule {new.id} saved."]
    assert table_ids(at) == [world["mine"], new.id]
    row = frame(at, "Id").set_index("Id").loc[new.id]
    assert (row["Schedule"], row["Timezone"], row["Next fire"]) == (
        "At 02:30", "America/New_York", "Fri 06 Mar 2026 02:30 EST")
    assert at.query_params["schedule"] == str(new.id)  # the saved schedule is the picked one
    assert "form_save" not in buttons(at)  # the form closed

    click(at, "schedule_edit")
    assert at.subheader[0].value == f"Edit schedule {new.id}"
    assert at.text_input(key="form_time").value == "02:30"
    assert at.text_area(key="form_emails").value == "night@acme.example"
    at.text_input(key="form_time").input("01:15").run()
    assert DST_NOTE not in [i.value for i in at.info]
    click(at, "form_save")
    assert [s.value for s in at.success] == [f"Schedule {new.id} saved."]
    changes = frame(at, "What")
    assert list(changes["Action"]) == ["updated", "created"]
    assert readable(changes["What"][0]) == "cron: 30 2 * * * → 15 1 * * *"  # st.table: markdown
    assert readable(changes["Who"][0]) == EDITOR

    click(at, "schedule_pause")
    assert [s.value for s in at.success] == [f"Schedule {new.id} paused."]
    row = frame(at, "Id").set_index("Id").loc[new.id]
    assert row["Paused"] and row["Next fire"] == "paused"
    assert "schedule_resume" in buttons(at) and "schedule_pause" not in buttons(at)
    click(at, "schedule_resume")
    row = frame(at, "Id").set_index("Id").loc[new.id]
    assert not row["Paused"] and row["Next fire"] == "Fri 06 Mar 2026 01:15 EST"
    assert list(frame(at, "What")["Action"]) == ["resumed", "paused", "updated", "created"]

    at.checkbox(key="schedules_show_paused").uncheck().run()
    assert table_ids(at) == [world["mine"], new.id]  # none is paused now
    at.selectbox(key="schedules_sort").select("Next fire").run()
    assert table_ids(at) == [new.id, world["mine"]]  # 01:15 New York is 06:15Z, 09:00 Berlin 08:00Z
    at.selectbox(key="schedules_sort").select("Report").run()
    assert table_ids(at) == [world["mine"], new.id]
    at.text_input(key="schedules_filter").input("night@").run()
    assert table_ids(at) == [new.id]
    at.selectbox(key="schedules_status").select("failed").run()
    assert table_ids(at) == []


@on_sqlite
def test_send_now_then_delete_keeps_the_runs(session: Session, world,
                                             mail_sink: MailSink) -> None:  # noqa: F811
    at = choose(page(), world["mine"])
    assert "No runs yet." in shown(at.main)
    click(at, "schedule_send_now")
    reread(session)
    run = session.exec(select(ReportRun)).one()
    assert (run.manual, run.requested_by, run.status) == (True, EDITOR, "success")
    assert [s.value for s in at.success] == [
        f"Run {run.id} queued and run in this process (no worker queue is configured): success."]
    assert [m.rcpt_tos for m in mail_sink.mails] == [["boss@acme.example"]]
    runs = frame(at, "Run")
    assert runs.to_dict("records") == [{
        "Run": run.id, "Slot": "Thu 05 Mar 2026 16:00 CET", "Status": "success", "Error": "",
        "Deliveries": 1, "Sent": 1, "Test": "", "By": EDITOR}]
    assert frame(at, "Id").set_index("Id").loc[world["mine"], "Last status"] == "success"

    click(at, "schedule_delete")
    assert any("its runs and change history are kept" in w.value for w in at.warning)
    assert table_ids(at) == [world["mine"]]  # not yet
    click(at, "schedule_delete_cancel")
    assert table_ids(at) == [world["mine"]] and "schedule_delete_confirm" not in buttons(at)
    click(at, "schedule_delete")
    click(at, "schedule_delete_confirm")
    assert [s.value for s in at.success] == [
        f"Schedule {world['mine']} deleted; its runs and change history are kept."]
    assert table_ids(at) == [] and "schedule" not in at.query_params
    reread(session)
    assert session.get(Schedule, world["mine"]).deleted_at == NOW
    assert session.get(ReportRun, run.id) is not None  # the history stays
    assert session.exec(select(Delivery)).one().run_id == run.id


@on_sqlite
def test_send_a_test_to_typed_addresses(session: Session, world,
                                        mail_sink: MailSink) -> None:  # noqa: F811
    at = choose(page(), world["mine"])
    click(at, "schedule_send_test")
    assert [e.value for e in at.error] == [
        "The test recipients are empty; type at least one e-mail address or Telegram chat id to "
        "send the test to."]
    assert row_counts(session)["report_run"] == 0

    at.text_area(key="test_emails").input("qa@acme.example")
    click(at, "schedule_send_test")
    reread(session)
    run = session.exec(select(ReportRun)).one()
    assert (run.test, run.status) == (True, "success")
    assert [s.value for s in at.success] == [
        f"Test run {run.id} queued and run in this process (no worker queue is configured): "
        f"success. It goes only to the addresses typed; a test run does not change the "
        f"schedule's status."]
    assert [m.rcpt_tos for m in mail_sink.mails] == [["qa@acme.example"]]
    assert frame(at, "Run")["Test"].tolist() == ["test"]
    assert session.get(Schedule, world["mine"]).last_status is None  # untouched
    assert frame(at, "Id")["Last status"].tolist() == ["not run yet"]


@on_sqlite
def test_send_now_without_mail_settings_says_why_it_failed(session: Session, world) -> None:
    at = click(choose(page(), world["mine"]), "schedule_send_now")
    reread(session)
    run = session.exec(select(ReportRun)).one()
    assert run.status == "failed"
    [error] = [readable(e.value) for e in at.error]
    assert error.startswith(f"Run {run.id} queued and run in this process (no worker queue is "
                            f"configured): failed: ")
    assert "MAIL_SMTP_HOST is not set" in error
    assert frame(at, "Run")["Status"].tolist() == ["failed"]


@on_sqlite
def test_an_invalid_cron_shows_one_sentence_and_writes_nothing(session: Session, world) -> None:
    before = row_counts(session)
    at = click(page(), "schedule_new")
    at.radio(key="form_timing").set_value("cron").run()
    at.text_input(key="form_cron").input("61 25 * * *").run()
    assert not at.table  # no fire times for it (and no schedule picked, so no history)
    [helper] = [readable(e.value) for e in at.error]
    assert helper.startswith("Invalid cron expression '61 25 * * *'")
    click(at, "form_save")
    errors = [readable(e.value) for e in at.error]
    assert errors == [helper, helper]  # beside the field, and at the top of the form on Save
    assert helper.endswith(".") and helper.replace("e.g. ", "").count(". ") == 0
    assert "Traceback" not in shown(at.main) and not at.success
    assert row_counts(session) == before
    assert "form_save" in buttons(at)  # the form stays open with what was typed
    assert at.text_input(key="form_cron").value == "61 25 * * *"

    at.text_input(key="form_cron").input("30 2 * * *").run()
    assert DST_NOTE not in [i.value for i in at.info]  # Berlin's clocks change on 29 Mar
    at.selectbox(key="form_timezone").select("America/New_York").run()
    assert DST_NOTE in [i.value for i in at.info] and len(frame(at, "UTC")) == 5
    click(at, "form_cancel")
    assert row_counts(session) == before and "form_save" not in buttons(at)


@on_sqlite
def test_a_viewer_reads_without_edit_buttons(session: Session, world) -> None:
    schedule = session.get(Schedule, world["mine"])
    set_active(session, session.get(Schedule, schedule.id), False, NOW, actor=EDITOR)
    session.add(ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, scheduled_for=NOW,
                          status="failed", error="boom", manual=True))
    session.commit()
    at = page(VIEWER)
    assert table_ids(at) == [world["mine"]]
    assert not buttons(at) & EDIT_BUTTONS
    choose(at, world["mine"])
    assert not buttons(at) & EDIT_BUTTONS
    assert not at.expander and not at.text_area
    assert frame(at, "Run")[["Status", "Error"]].values.tolist() == [["failed", "boom"]]
    assert frame(at, "What")["What"].tolist()[0] == "paused: no → yes"
    assert [b.label for b in at.main.button] == []
    assert session.exec(select(ChangeEvent).where(ChangeEvent.action == "paused")).one().actor == EDITOR


def test_the_grid_follows_the_picked_schedule() -> None:
    """The grid keeps the row clicked in it; a schedule picked elsewhere, or rows that moved,
    get a fresh grid (the next key) that starts on the picked row. (AppTest cannot click a grid.)"""
    state: dict = {}
    assert schedules_view.table_grid(state, 2, [1, 2]) == ("schedules_grid_0", {"selection": {"rows": [1]}})
    state.update({"schedules_grid_0": {"selection": {"rows": [1]}}, schedules_view.TABLE_IDS: [1, 2]})
    assert schedules_view.table_grid(state, 2, [1, 2]).key == "schedules_grid_0"  # nothing moved
    state["schedules_grid_0"] = {"selection": {"rows": [0]}}  # a click on row 1 picks schedule 1
    assert schedules_view.table_grid(state, 1, [1, 2]).key == "schedules_grid_0"
    grid = schedules_view.table_grid(state, 2, [1, 2])  # 2 picked in the list
    assert grid == ("schedules_grid_1", {"selection": {"rows": [1]}})
    state["schedules_grid_1"] = {"selection": {"rows": [1]}}
    grid = schedules_view.table_grid(state, 2, [2, 1])  # sorted another way: 2 is now first
    assert grid == ("schedules_grid_2", {"selection": {"rows": [0]}})
    state.update({"schedules_grid_2": {"selection": {"rows": []}}, schedules_view.TABLE_IDS: [2, 1]})
    assert schedules_view.table_grid(state, None, [1, 2]).key == "schedules_grid_2"  # none picked
