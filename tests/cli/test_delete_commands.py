"""`herald schedule delete`, `herald report delete` and `herald tenant delete`: each names what
goes and asks at a terminal before deleting what has history, `--yes` deletes without asking,
and without a terminal to ask on nothing is deleted. The rows go, the change is recorded (a
tenant's own audit goes with it, so its deletion is logged), and the other tenant is untouched.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from select import select as readable

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from models.audit import ChangeEvent
from models.db import utcnow
from models.definition import load_definition
from models.reports import Report
from models.runs import ReportRun
from models.schedules import Schedule
from models.tenancy import Membership, Tenant, User
from pipeline.leases import take_run
from services import tokens
from services.access import OPERATOR
from tests.seeding import add_schedule, add_tenant, add_user, manual_run, save_report

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "fixtures" / "video-performance.yaml"
SHARED = "sam@example.com"  # a member of both tenants


def populate(session: Session, slug: str) -> dict[str, int]:
    """A tenant with a report, two schedules (the first with three runs), two members (one of
    them, SHARED, in both tenants), an API token and a fallback recipient."""
    tenant = add_tenant(session, slug, slug.title(), "Europe/Berlin", emails=[f"ops@{slug}.example"])
    save_report(session, tenant, load_definition(REPORT))
    daily = add_schedule(session, tenant, "video-performance", now=utcnow(), cadence="daily",
                         at="09:00", emails=[f"boss@{slug}.example"])
    weekly = add_schedule(session, tenant, "video-performance", now=utcnow(), cron_expr="0 7 * * 1")
    add_user(session, f"ana@{slug}.example", tenant, "editor", "a-password-123")
    add_user(session, SHARED, tenant, "viewer")
    tokens.create_token(session, OPERATOR, tenant.id, ["reports.read"], name="ci", now=utcnow())
    session.commit()
    for _ in range(3):
        manual_run(daily.id)
    return {"tenant": tenant.id, "daily": daily.id, "weekly": weekly.id}


@pytest.fixture
def two(session: Session) -> dict[str, dict[str, int]]:
    return {slug: populate(session, slug) for slug in ("acme", "beta")}


def tenant_rows(session: Session, tenant_id: int) -> dict[str, int]:
    """How many rows of each table with a `tenant_id` belong to the tenant."""
    session.rollback()  # read what the command committed
    return {t.name: session.execute(sa.select(sa.func.count()).select_from(t)
                                    .where(t.c.tenant_id == tenant_id)).scalar_one()
            for t in SQLModel.metadata.sorted_tables if "tenant_id" in t.c}


def refused(result) -> str:
    """The one sentence a refused command printed, exit status 1."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def at_a_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """`herald ARGS` in a pseudo-terminal, as a person runs it: wait for its [y/N] question,
    type `answer`, and return its exit status and everything it showed."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "herald", *args], stdin=child, stdout=child,
                               stderr=child, cwd=ROOT, env=os.environ, close_fds=True)
    os.close(child)
    shown, deadline = b"", time.monotonic() + 60
    try:
        while b"[y/N]: " not in shown and time.monotonic() < deadline and process.poll() is None:
            if readable([main], [], [], 0.5)[0]:
                shown += os.read(main, 4096)
        os.write(main, answer.encode() + b"\n")
        while readable([main], [], [], 10)[0]:
            chunk = os.read(main, 4096)
            if not chunk:
                break
            shown += chunk
    except OSError:  # the terminal closed: the command has ended
        pass
    finally:
        status = process.wait(timeout=60)
        os.close(main)
    return status, shown.decode().replace("\r\n", "\n")


def live_schedules(session: Session, tenant_id: int) -> list[int]:
    session.rollback()
    return list(session.exec(select(Schedule.id).where(Schedule.tenant_id == tenant_id,
                                                      Schedule.deleted_at.is_(None))
                             .order_by(Schedule.id)))


def deletions(session: Session, tenant_id: int) -> list[tuple[str, int, str, dict]]:
    session.rollback()
    return [(e.object_type, e.object_id, e.actor, e.changes) for e in session.exec(
        select(ChangeEvent).where(ChangeEvent.tenant_id == tenant_id, ChangeEvent.action == "deleted")
        .order_by(ChangeEvent.id))]


def test_schedule_delete_asks_at_a_terminal_and_a_no_keeps_it(session: Session, two) -> None:
    acme = two["acme"]
    status, shown = at_a_terminal(["schedule", "delete", str(acme["daily"])], "n")
    question = f"schedule {acme['daily']} has 3 runs; delete it (its history stays)? [y/N]"
    assert (status, shown.splitlines()) == (1, [f"{question}: n", "nothing deleted"])
    assert live_schedules(session, acme["tenant"]) == [acme["daily"], acme["weekly"]]

    status, shown = at_a_terminal(["schedule", "delete", str(acme["daily"])], "y")
    assert (status, shown.splitlines()[-1]) == (0, f"schedule {acme['daily']} deleted; its 3 runs "
                                                   f"stay in the history")
    assert live_schedules(session, acme["tenant"]) == [acme["weekly"]]


def test_without_a_terminal_and_without_yes_nothing_is_deleted(cli, session: Session, two) -> None:
    acme = two["acme"]
    before = tenant_rows(session, acme["tenant"])
    sentence = refused(cli("schedule", "delete", acme["daily"]))
    assert sentence == (f"error: schedule {acme['daily']} has 3 runs; nobody is at a terminal to "
                        f"confirm, so nothing was deleted: add --yes to delete without being asked.")
    assert "nobody is at a terminal" in refused(cli("report", "delete", "video-performance",
                                                    "--tenant", "acme", "--with-schedules"))
    assert refused(cli("tenant", "delete", "acme")).startswith(
        f"error: tenant acme holds 1 report, 2 schedules ({acme['daily']}, {acme['weekly']}), 3 runs, "
        "2 memberships (accounts "
        "stay; 1 user left in no tenant), 1 API token and 1 fallback recipient; nobody is at a "
        "terminal to confirm")
    assert tenant_rows(session, acme["tenant"]) == before


def test_schedule_delete_yes_ends_it_keeps_its_runs_and_is_recorded(cli, session: Session, two) -> None:
    acme, beta = two["acme"], two["beta"]
    beta_before = tenant_rows(session, beta["tenant"])
    result = cli("schedule", "delete", acme["daily"], "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"schedule {acme['daily']} deleted; its 3 runs stay in the history\n"
    assert live_schedules(session, acme["tenant"]) == [acme["weekly"]]
    listed = cli("schedule", "list", "--tenant", "acme").stdout
    assert f"{acme['daily']:>5}  " not in listed and f"{acme['weekly']:>5}  " in listed
    assert len(cli("runs", "--schedule", acme["daily"], "--json").stdout.split('"id"')) - 1 >= 3
    assert deletions(session, acme["tenant"]) == [
        ("schedule", acme["daily"], "cli", {"deleted": [False, True], "paused": [False, True]})]
    assert refused(cli("schedule", "delete", acme["daily"], "--yes")) == f"error: No schedule {acme['daily']}."
    assert tenant_rows(session, beta["tenant"]) == beta_before


def test_a_schedule_without_runs_is_deleted_without_asking(cli, session: Session, two) -> None:
    weekly = two["acme"]["weekly"]
    result = cli("schedule", "delete", weekly)  # no terminal, no --yes: nothing to ask about
    assert (result.exit_code, result.stdout) == (0, f"schedule {weekly} deleted\n")


def test_report_delete_refuses_while_it_has_schedules_then_takes_them_along(
        cli, session: Session, two) -> None:
    acme, beta = two["acme"], two["beta"]
    beta_before = tenant_rows(session, beta["tenant"])
    report_id = session.exec(select(Report.id).where(Report.tenant_id == acme["tenant"])).one()
    assert refused(cli("report", "delete", "video-performance", "--tenant", "acme", "--yes")) == (
        f"error: Report video-performance has 2 schedules ({acme['daily']}, {acme['weekly']}); "
        f"delete them first (`herald schedule delete ID`), or add --with-schedules to delete them "
        f"with the report.")
    assert live_schedules(session, acme["tenant"]) == [acme["daily"], acme["weekly"]]

    result = cli("report", "delete", "video-performance", "--tenant", "acme", "--with-schedules", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"report video-performance deleted, with 2 schedules ({acme['daily']}, "
                             f"{acme['weekly']}) and 3 runs\n")
    left = tenant_rows(session, acme["tenant"])
    assert (left["report"], left["schedule"], left["report_run"]) == (0, 0, 0)
    assert (left["membership"], left["api_token"], left["tenant_recipient"]) == (2, 1, 1)
    assert deletions(session, acme["tenant"]) == [
        ("schedule", acme["daily"], "cli", {"deleted": [False, True], "paused": [False, True]}),
        ("schedule", acme["weekly"], "cli", {"deleted": [False, True], "paused": [False, True]}),
        ("report", report_id, "cli", {"title": ["Video performance", None],
                                      "schedules": [[acme["daily"], acme["weekly"]], None],
                                      "runs": [3, None]})]
    assert tenant_rows(session, beta["tenant"]) == beta_before
    assert "video-performance" in cli("schedule", "list", "--tenant", "beta").stdout


def test_a_report_whose_schedules_were_deleted_goes_with_their_runs(cli, session: Session, two) -> None:
    acme = two["acme"]
    for schedule_id in (acme["daily"], acme["weekly"]):
        assert cli("schedule", "delete", schedule_id, "--yes").exit_code == 0
    assert "3 runs; nobody is at a terminal" in refused(
        cli("report", "delete", "video-performance", "--tenant", "acme"))
    result = cli("report", "delete", "video-performance", "--tenant", "acme", "--yes")
    assert result.stdout == "report video-performance deleted, with 3 runs\n"
    assert tenant_rows(session, acme["tenant"])["report_run"] == 0


def test_tenant_delete_takes_everything_it_holds_and_nothing_else(cli, session: Session, two) -> None:
    acme, beta = two["acme"], two["beta"]
    beta_before = tenant_rows(session, beta["tenant"])
    result = cli("tenant", "delete", "acme", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"tenant acme deleted, with 1 report, 2 schedules ({acme['daily']}, "
                             f"{acme['weekly']}), 3 runs, 2 memberships (accounts stay; 1 user left in no tenant), 1 API token "
                             "and 1 fallback recipient\n")
    assert f"herald.audit: tenant acme (id {acme['tenant']}) deleted by cli" in result.stderr

    assert set(tenant_rows(session, acme["tenant"]).values()) == {0}  # no orphan of acme anywhere
    assert session.get(Tenant, acme["tenant"]) is None
    assert tenant_rows(session, beta["tenant"]) == beta_before
    # The accounts stay: Ana with no tenant, Sam still in beta.
    users = {u.email: u.id for u in session.exec(select(User))}
    assert set(users) == {"ana@acme.example", SHARED, "ana@beta.example"}
    assert list(session.exec(select(Membership.tenant_id).where(Membership.user_id == users[SHARED]))) == [
        beta["tenant"]]
    assert refused(cli("schedule", "list", "--tenant", "acme")).startswith("error: No tenant 'acme'")
    # The slug is free again.
    assert cli("tenant", "add", "acme", "--name", "Acme again").exit_code == 0


def test_an_empty_tenant_is_deleted_without_asking(cli) -> None:
    assert cli("tenant", "add", "gamma", "--name", "Gamma").exit_code == 0
    result = cli("tenant", "delete", "gamma")
    assert (result.exit_code, result.stdout) == (0, "tenant gamma deleted\n")


def test_a_run_a_worker_holds_stops_the_report_and_tenant_deletes(cli, session: Session, two) -> None:
    acme = two["acme"]
    run_id = session.exec(select(ReportRun.id).where(ReportRun.schedule_id == acme["daily"])).first()
    assert take_run(run_id, utcnow(), timedelta(minutes=5))
    assert refused(cli("report", "delete", "video-performance", "--tenant", "acme",
                       "--with-schedules", "--yes")) == (
        "error: A worker is running a run of report 'video-performance' now; delete it once it "
        "has finished.")
    assert refused(cli("tenant", "delete", "acme", "--yes")) == (
        "error: A worker is running a run of tenant 'acme' now; delete it once it has finished.")
    assert session.exec(select(sa.func.count()).select_from(Report)).one() == 2
