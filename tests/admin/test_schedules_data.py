"""The schedules page's data functions: what each role may do, another tenant's schedules
reading as not found, refusals naming the field with nothing written, the audit trail
(admin and CLI alike), and send now through the tick's path. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, select

from models.audit import ChangeEvent
from models.definition import parse_definition
from models.errors import InvalidInput, NotFound, PermissionDenied
from models.runs import ReportRun
from models.schedules import Schedule, set_active
from models.settings import get_settings
from models.tenancy import Membership, Role, User
from services import reports, runs, schedule_form, schedule_table, schedules, tenants
from services.access import OPERATOR, Viewer, load_viewer
from services.schedules import ScheduleValues
from tests.seeding import add_schedule, count_rows

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REPORT = {
    "slug": "views", "title": "Views",
    "params": {"campaign": "Campaign A", "limit": 10, "ratio": 0.5, "detailed": False},
    "sections": [{"kind": "kpi", "title": "Total", "sql": "SELECT :limit AS value"}],
}
FIXTURE_REPORT = Path(__file__).parents[1] / "fixtures" / "video-performance.yaml"
ROLES = {Role.VIEWER: "vera@acme.example", Role.EDITOR: "ed@acme.example", Role.ADMIN: "ada@acme.example"}


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}


def schedule_state(session: Session, schedule_id: int) -> dict[str, Any]:
    session.expire_all()
    return session.get(Schedule, schedule_id).model_dump()


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    """acme (one schedule, a fallback e-mail, a viewer, an editor and an admin) and beta (one
    schedule, no members from acme)."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin", emails=["ops@acme.example"])
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    mine = add_schedule(session, acme, "views", now=NOW, cron_expr="0 9 * * *",
                                   emails=["boss@acme.example"])
    theirs = add_schedule(session, beta, "views", now=NOW, cadence="daily", at="08:00")
    users = {}
    for role, email in ROLES.items():
        user = User(email=email, password_hash="x")
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, tenant_id=acme.id, role=role))
        users[role] = user.id
    session.commit()
    return {"acme": acme.id, "beta": beta.id, "mine": mine.id, "theirs": theirs.id, "users": users}


def viewer_for(session: Session, world: dict[str, Any], role: Role) -> Viewer:
    return load_viewer(session, world["users"][role])


class Dispatched(list):
    """A dispatch that records what it was given (the tick's dispatch is tested elsewhere)."""

    def __call__(self, runs) -> None:
        self.extend(runs)


def values(**changes: Any) -> ScheduleValues:
    base = dict(report="views", cadence="weekly", time="07:15", timezone="Europe/London",
                formats=("pdf", "csv"), emails=("new@acme.example",), chats=("-1001",),
                subject="{title} weekly", params={"limit": 25})
    return ScheduleValues(**{**base, **changes})


# Each action on a schedule id, as the page calls it; `sid` may be another tenant's.
ACTIONS: dict[str, Callable[[Session, Viewer, int, int], Any]] = {
    "list": lambda s, v, tenant, sid: schedule_table.list_schedules(s, v, tenant),
    "form": lambda s, v, tenant, sid: schedule_form.schedule_form_defaults(s, v, tenant, sid),
    "save": lambda s, v, tenant, sid: schedules.save_schedule(s, v, tenant, values(), now=NOW,
                                                              schedule_id=sid),
    "pause": lambda s, v, tenant, sid: schedules.pause(s, v, sid, now=NOW),
    "resume": lambda s, v, tenant, sid: schedules.resume(s, v, sid, now=NOW),
    "delete": lambda s, v, tenant, sid: schedules.delete(s, v, sid, now=NOW),
    "send_now": lambda s, v, tenant, sid: runs.send_now(s, v, sid, now=NOW, dispatch=Dispatched()),
    "send_test": lambda s, v, tenant, sid: runs.send_test(
        s, v, sid, now=NOW, emails=["qa@acme.example"], dispatch=Dispatched()),
    "history": lambda s, v, tenant, sid: schedules.schedule_history(s, v, sid),
}
READS = {"list", "history"}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", list(Role))
def test_each_role_may_do_what_it_may(session: Session, world, role: Role, action: str) -> None:
    viewer = viewer_for(session, world, role)
    call = ACTIONS[action]
    if role == Role.VIEWER and action not in READS:
        before = row_counts(session), schedule_state(session, world["mine"])
        with pytest.raises(PermissionDenied, match="^Your role in this tenant is viewer; to edit you "
                                                   "need to be editor or admin. Ask a tenant admin.$"):
            call(session, viewer, world["acme"], world["mine"])
        session.rollback()
        assert (row_counts(session), schedule_state(session, world["mine"])) == before
        return
    if action == "resume":  # so that resuming changes something
        set_active(session, session.get(Schedule, world["mine"]), False, NOW, actor="cli")
        session.commit()
    result = call(session, viewer, world["acme"], world["mine"])
    session.commit()
    if action == "list":
        assert [row.id for row in result] == [world["mine"]]
    if action in ("send_now", "send_test"):
        run = session.get(ReportRun, result.run_id)
        assert (run.requested_by, run.manual, run.test) == (ROLES[role], True, action == "send_test")
        assert result.status == "queued"
    if action in ("save", "pause", "resume", "delete"):
        last = session.exec(select(ChangeEvent).order_by(ChangeEvent.id.desc())).first()
        assert (last.actor, last.object_id) == (ROLES[role], world["mine"])


@pytest.mark.parametrize("action", list(ACTIONS))
def test_another_tenants_schedule_reads_as_not_found_and_nothing_changes(
    session: Session, world, action: str
) -> None:
    viewer = viewer_for(session, world, Role.ADMIN)
    theirs = world["theirs"]
    before = row_counts(session), schedule_state(session, theirs)
    if action == "list":
        with pytest.raises(NotFound, match="^No such tenant among yours.$"):
            ACTIONS[action](session, viewer, world["beta"], theirs)
        assert [r.id for r in schedule_table.list_schedules(session, viewer, world["acme"])] == [world["mine"]]
    else:
        with pytest.raises(NotFound, match=f"^No schedule {theirs}.$"):
            ACTIONS[action](session, viewer, world["acme"], theirs)
    session.rollback()
    assert (row_counts(session), schedule_state(session, theirs)) == before


def test_a_deleted_schedule_keeps_its_runs_and_is_gone_everywhere(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    sent = runs.send_now(session, editor, world["mine"], now=NOW, dispatch=Dispatched())
    schedules.delete(session, editor, world["mine"], now=NOW + timedelta(minutes=1))
    session.commit()
    row = session.get(Schedule, world["mine"])
    assert (row.deleted_at, row.active) == (NOW + timedelta(minutes=1), False)
    assert session.get(ReportRun, sent.run_id) is not None
    assert schedule_table.list_schedules(session, editor, world["acme"]) == []
    for action in set(ACTIONS) - {"list"}:
        with pytest.raises(NotFound, match=f"^No schedule {world['mine']}.$"):
            ACTIONS[action](session, editor, world["acme"], world["mine"])
        session.rollback()
    with pytest.raises(NotFound, match=f"No schedule {world['mine']}"):  # the CLI's path too
        schedules.resume(session, OPERATOR, world["mine"], now=NOW)


def test_the_table_shows_what_the_page_needs(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    fallback_only = schedules.save_schedule(
        session, editor, world["acme"], ScheduleValues(report="views", cron="30 2 * * 1-5",
                                                       channels=("email",)), now=NOW)
    schedule = session.get(Schedule, world["mine"])
    schedule.last_status, schedule.last_error = "failed", "1 of 1 deliveries failed: boom"
    session.commit()
    rows = {r.id: r for r in schedule_table.list_schedules(session, viewer_for(session, world, Role.VIEWER),
                                                      world["acme"])}
    mine = rows[world["mine"]]
    assert (mine.report_slug, mine.report_title, mine.description) == ("views", "Views", "At 09:00")
    assert mine.timezone == "Europe/Berlin"
    assert mine.next_run_utc == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert mine.next_run_local.isoformat() == "2026-03-03T09:00:00+01:00"
    assert (mine.last_status, mine.last_error) == ("failed", "1 of 1 deliveries failed: boom")
    assert mine.recipients_text == "boss@acme.example"
    assert (mine.formats, mine.channels, mine.paused) == (("pdf",), ("email",), False)
    other = rows[fallback_only.id]
    assert other.recipients_text == "tenant fallback: ops@acme.example"
    assert other.recipients[0].fallback is True
    assert other.description == "At 02:30, Monday through Friday"

    schedules.pause(session, editor, fallback_only.id, now=NOW)
    paused = {r.id: r for r in schedule_table.list_schedules(session, editor, world["acme"])}[fallback_only.id]
    assert (paused.paused, paused.next_run_local, paused.next_run_utc) == (True, None, None)


def test_the_form_starts_from_the_schedule_with_typed_params(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    new = schedule_form.schedule_form_defaults(session, editor, world["acme"])
    assert new.schedule_id is None
    assert (new.values.report, new.values.cadence, new.values.time) == ("views", "daily", "09:00")
    assert new.values.timezone == new.tenant_timezone == "Europe/Berlin"
    assert new.fallback_text == "tenant fallback: ops@acme.example"
    assert new.max_recipients == 20
    assert [(p.name, p.kind, p.default, p.value) for p in new.params] == [
        ("campaign", "str", "Campaign A", "Campaign A"), ("limit", "int", 10, 10),
        ("ratio", "float", 0.5, 0.5), ("detailed", "bool", False, False)]
    assert [r.slug for r in new.reports] == ["views"]

    saved = schedules.save_schedule(session, editor, world["acme"], values(
        params={"limit": "25", "ratio": "1.5", "detailed": "true", "campaign": "Campaign B"}), now=NOW)
    stored = session.get(Schedule, saved.id).params
    assert stored == {"limit": 25, "ratio": 1.5, "detailed": True, "campaign": "Campaign B"}
    form = schedule_form.schedule_form_defaults(session, editor, world["acme"], saved.id)
    assert form.values == values(params=stored, channels=("email", "telegram"))  # as resolved
    assert {p.name: p.value for p in form.params} == stored


def test_edit_replaces_fields_and_replans_from_now(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    later = NOW + timedelta(days=10)
    row = schedules.save_schedule(session, editor, world["acme"], values(), now=later,
                                  schedule_id=world["mine"])
    assert row.id == world["mine"]
    assert (row.cron, row.timezone, row.subject) == ("15 7 * * 1", "Europe/London", "{title} weekly")
    assert row.next_run_utc == datetime(2026, 3, 16, 7, 15, tzinfo=UTC)  # the Monday after `later`
    assert {(r.channel, r.address) for r in row.recipients} == {("email", "new@acme.example"),
                                                                  ("telegram", "-1001")}
    assert row.channels == ("email", "telegram")


REFUSALS = [
    pytest.param(dict(cadence=None, time=None, cron="61 25 * * *"), "Invalid cron expression '61 25 * * *'",
                 id="cron"),
    pytest.param(dict(cadence=None, time=None, cron="0 9 30 2 *"),
                 "cron '0 9 30 2 *' never fires, since day 30 never occurs in February", id="cron-never"),
    pytest.param(dict(cron="0 9 * * *"), "Both cron and cadence are given", id="cron-and-cadence"),
    pytest.param(dict(time=None), "The weekly cadence needs a time; set at to HH:MM", id="no-time"),
    pytest.param(dict(time="9.30"), "at '9.30' is not a time of day", id="time"),
    pytest.param(dict(cadence="hourly"), "Unknown cadence 'hourly'", id="cadence"),
    pytest.param(dict(cadence=None, time=None), "A schedule needs cron or cadence", id="no-timing"),
    pytest.param(dict(timezone="Mars/Olympus"), "Unknown timezone 'Mars/Olympus'", id="timezone"),
    pytest.param(dict(formats=("docx",)), "Unknown format 'docx'", id="formats"),
    pytest.param(dict(emails=("not-an-address",)), "'not-an-address' is not a valid e-mail address",
                 id="emails"),
    pytest.param(dict(chats=("@chat",)), "Telegram chat id '@chat' is not numeric", id="chats"),
    pytest.param(dict(emails=tuple(f"r{i}@acme.example" for i in range(20))),
                 "21 recipients given; a schedule may have at most 20", id="too-many"),
    pytest.param(dict(channels=("telegram",)), "email recipients are given but channels leaves email out",
                 id="channels"),
    pytest.param(dict(channels=("sms",)), "Unknown channel 'sms'", id="unknown-channel"),
    pytest.param(dict(subject="Views\r\nBcc: x@evil.example"), "The subject contains a line break",
                 id="subject"),
    pytest.param(dict(subject="x" * 301), "The subject is 301 characters long", id="subject-length"),
    pytest.param(dict(params={"nope": 1}), "Report 'views' has no parameter 'nope'", id="params-unknown"),
    pytest.param(dict(params={"limit": "ten"}), "params.limit takes a whole number", id="params-int"),
    pytest.param(dict(params={"limit": 2.5}), "params.limit takes a whole number", id="params-fraction"),
    pytest.param(dict(params={"ratio": "half"}), "params.ratio takes a number", id="params-float"),
    pytest.param(dict(params={"detailed": "maybe"}), "params.detailed takes true or false", id="params-bool"),
    pytest.param(dict(params={"campaign": 7}), "params.campaign takes text", id="params-text"),
    pytest.param(dict(report=None), "The report is not chosen", id="report-missing"),
    pytest.param(dict(report="nope"), "The report 'nope' is not one of this tenant's reports", id="report"),
]


@pytest.mark.parametrize("editing", [False, True], ids=["create", "edit"])
@pytest.mark.parametrize(("changes", "message"), REFUSALS)
def test_save_errors_name_the_field_and_write_nothing(
    session: Session, world, editing: bool, changes: dict, message: str
) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    before = row_counts(session), schedule_state(session, world["mine"])
    with pytest.raises(InvalidInput) as refused:
        schedules.save_schedule(session, editor, world["acme"], values(**changes), now=NOW,
                                schedule_id=world["mine"] if editing else None)
    text = str(refused.value)
    assert message in text
    assert "--" not in text and text.endswith(".")  # names fields, not flags
    assert text.replace("e.g. ", "").count(". ") == 0  # one sentence
    session.rollback()
    assert (row_counts(session), schedule_state(session, world["mine"])) == before


def test_send_test_needs_valid_recipients_and_writes_nothing_otherwise(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    before = row_counts(session)
    for emails, chats, message in [((), (), "The test recipients are empty; type at least one"),
                                   (("x@",), (), "'x@' is not a valid e-mail address"),
                                   ((), ("@qa",), "Telegram chat id '@qa' is not numeric")]:
        with pytest.raises(InvalidInput, match=message):
            runs.send_test(session, editor, world["mine"], now=NOW, emails=emails, chats=chats,
                                dispatch=Dispatched())
    assert row_counts(session) == before


def changes_of(session: Session, schedule_id: int) -> list[tuple[str, str, dict]]:
    session.expire_all()
    events = session.exec(select(ChangeEvent).where(ChangeEvent.object_type == "schedule",
                                                    ChangeEvent.object_id == schedule_id)
                          .order_by(ChangeEvent.id)).all()
    return [(e.action, e.actor, e.changes) for e in events]


def test_every_change_is_recorded_old_to_new(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    ed = ROLES[Role.EDITOR]
    created = schedules.save_schedule(session, editor, world["acme"], ScheduleValues(
        report="views", cron="0 9 * * *", emails=("a@acme.example",)), now=NOW)
    sid = created.id
    schedules.save_schedule(session, editor, world["acme"], ScheduleValues(
        report="views", cron="0 10 * * *", timezone="Asia/Tokyo", emails=("b@acme.example",),
        chats=("42",), formats=("csv",), subject="Hi {title}", params={"limit": 3}), now=NOW,
        schedule_id=sid)
    schedules.save_schedule(session, editor, world["acme"], ScheduleValues(   # nothing changed
        report="views", cron="0 10 * * *", timezone="Asia/Tokyo", emails=("b@acme.example",),
        chats=("42",), formats=("csv",), subject="Hi {title}", params={"limit": 3}), now=NOW,
        schedule_id=sid)
    schedules.pause(session, editor, sid, now=NOW)
    schedules.pause(session, editor, sid, now=NOW)  # already paused: no change, no row
    schedules.resume(session, editor, sid, now=NOW)
    schedules.delete(session, editor, sid, now=NOW)
    session.commit()

    events = changes_of(session, sid)
    assert [(action, actor) for action, actor, _ in events] == [
        ("created", ed), ("updated", ed), ("paused", ed), ("resumed", ed), ("deleted", ed)]
    assert events[0][2] == {
        "report": [None, "views"], "cron": [None, "0 9 * * *"], "timezone": [None, "Europe/Berlin"],
        "recipients": [None, {"email": ["a@acme.example"], "telegram": []}],
        "formats": [None, ["pdf"]], "channels": [None, ["email"]], "params": [None, {}],
        "paused": [None, False]}
    assert events[1][2] == {
        "cron": ["0 9 * * *", "0 10 * * *"], "timezone": ["Europe/Berlin", "Asia/Tokyo"],
        "recipients": [{"email": ["a@acme.example"], "telegram": []},
                       {"email": ["b@acme.example"], "telegram": ["42"]}],
        "formats": [["pdf"], ["csv"]], "channels": [["email"], ["email", "telegram"]],
        "subject": [None, "Hi {title}"], "params": [{}, {"limit": 3}]}
    assert [e[2] for e in events[2:]] == [{"paused": [False, True]}, {"paused": [True, False]},
                                          {"deleted": [False, True], "paused": [False, True]}]


def test_history_lists_runs_and_changes_newest_first(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    first = runs.send_now(session, editor, world["mine"], now=NOW, dispatch=Dispatched())
    schedules.pause(session, editor, world["mine"], now=NOW)
    test = runs.send_test(session, editor, world["mine"], now=NOW + timedelta(seconds=1),
                               chats=["1001"], dispatch=Dispatched())
    session.commit()
    history = schedules.schedule_history(session, viewer_for(session, world, Role.VIEWER), world["mine"])
    assert [r["id"] for r in history.runs] == [test.run_id, first.run_id]
    assert history.runs[0]["test"] is True
    assert history.runs[0]["test_recipients"] == [["telegram", "1001"]]
    assert history.runs[0]["requested_by"] == ROLES[Role.EDITOR]
    # Sends are changes too: who sent what, and which run it made.
    assert [c.action for c in history.changes] == ["test sent", "paused", "sent now", "created"]
    assert history.changes[0].changes == {"run": [None, test.run_id], "to": [None, ["telegram 1001"]]}
    assert history.changes[2].changes == {"run": [None, first.run_id]}
    assert {c.actor for c in history.changes[:3]} == {ROLES[Role.EDITOR]}
    assert history.changes[3].actor == "cli"  # the fixture makes it as herald's operator


def test_send_now_goes_through_the_ticks_dispatch(session: Session, world,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # embedded: dispatch_runs runs the pipeline here
    get_settings.cache_clear()
    editor = viewer_for(session, world, Role.EDITOR)
    sent = runs.send_now(session, editor, world["mine"], now=NOW)
    # acme has no data source, so the pipeline ends the run FAILED, and says why
    assert (sent.status, sent.test) == ("failed", False)
    session.expire_all()
    run = session.get(ReportRun, sent.run_id)
    assert (run.manual, run.requested_by) == (True, ROLES[Role.EDITOR])
    schedule = session.get(Schedule, world["mine"])
    assert schedule.last_status == "failed" and "has no data source" in schedule.last_error

    schedule.last_status, schedule.last_error = "success", None
    session.commit()
    tested = runs.send_test(session, editor, world["mine"], now=NOW + timedelta(seconds=1),
                                 emails=["qa@acme.example"])
    assert tested.status == "failed"
    session.expire_all()
    assert session.get(Schedule, world["mine"]).last_status == "success"  # a test is not mirrored


def test_resume_plans_from_now_without_catching_up(session: Session, world) -> None:
    editor = viewer_for(session, world, Role.EDITOR)
    schedules.pause(session, editor, world["mine"], now=NOW)
    later = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
    row = schedules.resume(session, editor, world["mine"], now=later)
    assert row.next_run_utc == datetime(2026, 3, 21, 8, 0, tzinfo=UTC)  # 09:00 Berlin, after `later`
    assert session.exec(select(ReportRun)).all() == []


def test_the_cli_records_changes_as_cli(cli, session: Session, tmp_path: Path) -> None:
    assert cli("tenant", "add", "acme", "--name", "Acme", "--email", "ops@acme.example").exit_code == 0
    assert cli("report", "add", "--tenant", "acme", FIXTURE_REPORT).exit_code == 0
    changed = tmp_path / "report.yaml"
    changed.write_text(FIXTURE_REPORT.read_text().replace("title: Video performance", "title: Views v2"))
    assert cli("report", "add", "--tenant", "acme", changed).exit_code == 0
    result = cli("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                 "--cron", "0 9 * * *", "--json")
    assert result.exit_code == 0, result.stderr
    sid = json.loads(result.stdout)["id"]
    assert cli("schedule", "pause", sid).exit_code == 0

    session.expire_all()
    events = session.exec(select(ChangeEvent).order_by(ChangeEvent.id)).all()
    assert [(e.object_type, e.action, e.actor) for e in events] == [
        ("tenant", "created", "cli"), ("report", "created", "cli"), ("report", "updated", "cli"),
        ("schedule", "created", "cli"), ("schedule", "paused", "cli")]
    assert events[0].changes["email"] == [None, ["ops@acme.example"]]
    created, updated = events[1].changes, events[2].changes
    assert created["title"] == [None, "Video performance"]
    assert created["definition"][0] is None and created["definition"][1]["sections"]
    assert updated["title"] == ["Video performance", "Views v2"]
    assert updated["definition"][0]["title"] == "Video performance"
    assert updated["definition"][1]["title"] == "Views v2"
    assert events[3].changes["cron"] == [None, "0 9 * * *"]
    assert session.get(Schedule, sid).created_by == "cli"

    assert cli("report", "add", "--tenant", "acme", changed).exit_code == 0  # the same file again
    assert count_rows(session, ChangeEvent) == 5


def test_tenant_members_only(session: Session, world) -> None:
    """A user with no membership of a tenant sees none of it, whatever their roles elsewhere."""
    outsider = Viewer(user_id=0, email="x@beta.example", roles={world["beta"]: Role.ADMIN})
    for call in ACTIONS.values():
        with pytest.raises(NotFound):
            call(session, outsider, world["acme"], world["mine"])
        session.rollback()


def test_the_form_keeps_send_if_and_spread_through_an_edit(session: Session, world) -> None:
    from admin.schedules import view

    editor = viewer_for(session, world, Role.EDITOR)
    saved = schedules.save_schedule(session, editor, world["acme"], values(send_if="always",
                                                                           spread_seconds=900), now=NOW)
    stored = session.get(Schedule, saved.id)
    assert (stored.send_if, stored.spread_seconds) == ("always", 900)
    assert 0 <= stored.spread_offset_seconds < 900

    # The form shows both, and saving it unchanged keeps both (and the same second)
    form = schedule_form.schedule_form_defaults(session, editor, world["acme"], saved.id)
    state = view.form_start(form)
    assert (state["form_send_if"], state["form_spread"]) == ("always", "900")
    before = stored.next_run_at
    schedules.save_schedule(session, editor, world["acme"], view.form_values(state, form.params),
                            now=NOW + timedelta(minutes=5), schedule_id=saved.id)
    session.refresh(stored)
    assert (stored.send_if, stored.spread_seconds, stored.next_run_at) == ("always", 900, before)

    with pytest.raises(InvalidInput, match="The spread 'soon' is not a whole number of seconds"):
        view.form_values({**state, "form_spread": "soon"}, form.params)
    with pytest.raises(InvalidInput, match=r"The spread is 7200 seconds; give 0 \(off\) to 3600"):
        schedules.save_schedule(session, editor, world["acme"], values(spread_seconds=7200), now=NOW)
