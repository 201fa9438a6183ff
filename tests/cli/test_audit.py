"""What the operator changes with the `herald` command is in the change audit the admin shows:
`tenant add` and `user add` on the Members page, `report add` on the report's Changes tab,
`schedule add`, `pause` and `resume` beside the schedule's runs; each by "cli"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from services import members, reports, schedules
from services.access import load_viewer
from tests.admin.test_app_login import log_in, new_app, readable

FIXTURE_REPORT = Path(__file__).resolve().parents[1] / "fixtures" / "video-performance.yaml"
ADMIN = "ada@acme.example"
on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def done_by_the_cli(cli, tmp_path: Path) -> dict[str, int]:
    """The operator's setup of a tenant, as a shell would type it."""
    def ok(*args: object) -> str:
        result = cli(*args, input="a-password-123\n")
        assert result.exit_code == 0, result.stderr
        return result.stdout

    ok("tenant", "add", "acme", "--name", "Acme", "--timezone", "Europe/Berlin",
       "--email", "ops@acme.example")
    admin = json.loads(ok("user", "add", ADMIN, "--tenant", "acme", "--role", "admin",
                          "--password-stdin", "--json"))["id"]
    ok("user", "add", "ed@acme.example", "--tenant", "acme", "--role", "editor")
    ok("user", "add", "ed@acme.example", "--tenant", "acme", "--role", "viewer")
    report = json.loads(ok("report", "add", "--tenant", "acme", FIXTURE_REPORT, "--json"))["id"]
    schedule = json.loads(ok("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                             "--cadence", "daily", "--at", "09:00", "--json"))["id"]
    ok("schedule", "pause", schedule)
    ok("schedule", "resume", schedule)
    return {"admin": admin, "report": report, "schedule": schedule}


def test_the_cli_s_changes_are_in_the_audit_the_admin_shows(
    session: Session, done_by_the_cli: dict[str, int]
) -> None:
    ada = load_viewer(session, done_by_the_cli["admin"])
    tenant_id = next(iter(ada.roles))

    member_changes = [(c.subject, c.action, c.actor)
                      for c in members.member_changes(session, ada, tenant_id)]
    assert member_changes == [
        ("ed@acme.example", "role changed", "cli"), ("ed@acme.example", "added (new account)", "cli"),
        (ADMIN, "added (new account)", "cli"), ("the tenant", "created", "cli")]

    report_changes = reports.report_changes(session, ada, done_by_the_cli["report"])
    assert [(c.action, c.actor, c.changes.get("title")) for c in report_changes] == [
        ("created", "cli", [None, "Video performance"])]

    history = schedules.schedule_history(session, ada, done_by_the_cli["schedule"])
    assert [(c.action, c.actor) for c in history.changes] == [
        ("resumed", "cli"), ("paused", "cli"), ("created", "cli")]
    assert history.changes[-1].changes["cron"] == [None, "0 9 * * *"]


@on_sqlite
def test_the_admin_s_pages_show_them(session: Session, done_by_the_cli: dict[str, int]) -> None:
    at = log_in(new_app().run(), ADMIN, "a-password-123")
    at.switch_page("members/page.py").run()
    table = at.container(key="member_changes").table[0].value
    assert list(table["Who"]) == ["cli"] * 4
    assert list(table["Action"]) == ["role changed", "added (new account)", "added (new account)",
                                     "created"]

    at.switch_page("reports/page.py").run()
    assert not at.exception, at.exception
    changes = at.container(key="report_changes").table[0].value
    assert (list(changes["Who"]), list(changes["Action"])) == (["cli"], ["created"])

    at.switch_page("schedules/page.py").run()
    at.selectbox(key="schedule_pick").select(done_by_the_cli["schedule"]).run()
    changes = at.container(key="schedule_changes").table[0].value
    assert list(changes["Action"]) == ["resumed", "paused", "created"]
    assert set(changes["Who"]) == {"cli"}
    assert "cron: 0 9 * * *" in readable(changes["What"].iloc[-1])
