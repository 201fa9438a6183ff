"""The data half of the CLI: happy paths, and every refusal with its sentence,
its exit status and no row written. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from argon2 import PasswordHasher
from sqlmodel import Session, SQLModel, select

from models.tenancy import Membership, Role, Tenant, User
from services.accounts import verify_password
from tests.seeding import count_rows

REPORT = Path(__file__).parents[1] / "fixtures" / "video-performance.yaml"
ANA, ANA_PASSWORD = "ana@acme.example", "correct horse battery"


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}


@pytest.fixture
def acme(cli) -> None:
    for args in (["tenant", "add", "acme", "--name", "Acme", "--timezone", "Europe/Moscow",
                  "--email", "ops@acme.example"],
                 ["report", "add", "--tenant", "acme", REPORT]):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr


def test_tenant_report_schedule_round_trip(cli, acme) -> None:
    result = cli("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                 "--cadence", "weekly", "--at", "09:30", "--format", "pdf", "--format", "csv",
                 "--email", "Boss@Example.COM", "--telegram", "-1001234567890",
                 "--subject", "Weekly views", "--json")
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["cron"] == "30 9 * * 1"
    assert created["timezone"] == "Europe/Moscow"  # the tenant's default
    assert created["formats"] == ["pdf", "csv"]
    assert created["next_run_at"].endswith("+00:00")
    assert created["recipients"] == [{"channel": "email", "address": "Boss@example.com"},
                                     {"channel": "telegram", "address": "-1001234567890"}]
    assert created["channels"] == ["email", "telegram"]  # those of the recipients given

    assert cli("schedule", "pause", created["id"]).exit_code == 0
    listed = json.loads(cli("schedule", "list", "--tenant", "acme", "--json").stdout)
    assert [(s["id"], s["active"]) for s in listed] == [(created["id"], False)]
    assert cli("schedule", "resume", created["id"]).exit_code == 0
    listed = json.loads(cli("schedule", "list", "--tenant", "acme", "--json").stdout)
    assert listed[0]["active"] is True

    telegram_only = json.loads(cli(*SCHEDULE, "--cron", "0 9 * * *", "--channel", "telegram", "--json").stdout)
    assert (telegram_only["channels"], telegram_only["recipients"]) == (["telegram"], [])  # tenant's chats


def test_report_add_updates_by_slug(cli, acme, tmp_path: Path) -> None:
    changed = tmp_path / "r.yaml"
    changed.write_text(REPORT.read_text().replace("title: Video performance", "title: Views v2"))
    result = cli("report", "add", "--tenant", "acme", changed, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["created"] is False
    assert json.loads(result.stdout)["title"] == "Views v2"


def test_tenant_json_hides_the_datasource_password(cli, create_tenant_database) -> None:
    reader = create_tenant_database()
    result = cli("tenant", "add", "beta", "--name", "Beta", "--json", "--datasource", reader.url)
    assert result.exit_code == 0, result.stderr
    assert reader.password not in result.stdout
    shown = json.loads(result.stdout)["datasource"]
    assert shown == reader.url.replace(f":{reader.password}@", ":***@")


def test_user_add_reads_the_password_from_stdin(cli, acme, session: Session) -> None:
    result = cli("user", "add", "ana@acme.example", "--tenant", "acme", "--role", "editor",
                 "--password-stdin", "--json", input="correct horse battery\n")
    assert result.exit_code == 0, result.stderr
    assert "generated_password" not in json.loads(result.stdout)
    assert json.loads(result.stdout)["change"] == "created"
    user = session.exec(User.__table__.select()).one()
    assert verify_password(User(**user._mapping), "correct horse battery")
    assert not verify_password(User(**user._mapping), "wrong")


def test_user_add_for_an_existing_user_changes_membership_never_the_password(
    cli, acme, session: Session
) -> None:
    assert cli("tenant", "add", "beta", "--name", "Beta").exit_code == 0
    created = cli("user", "add", ANA, "--tenant", "acme", "--role", "viewer", "--password-stdin",
                  input=f"{ANA_PASSWORD}\n")
    assert created.stdout == f"user {ANA} (id 1) created as viewer of acme\n"

    for tenant, role, line in [
        ("beta", "editor", f"existing user {ANA} (id 1) added to beta as editor; password unchanged"),
        ("acme", "admin", f"user {ANA} (id 1) is now admin of acme (was viewer); password unchanged"),
        ("acme", "admin", f"user {ANA} (id 1) is already admin of acme; nothing changed"),
    ]:
        result = cli("user", "add", ANA, "--tenant", tenant, "--role", role)
        assert (result.exit_code, result.stdout) == (0, line + "\n")  # and no generated password
    result = cli("user", "add", ANA, "--tenant", "beta", "--role", "viewer", "--json")
    assert json.loads(result.stdout) == {"id": 1, "email": ANA, "tenant": "beta", "role": "viewer",
                                         "change": "role changed", "previous_role": "editor"}

    session.expire_all()
    roles = {(m.tenant_id, m.role) for m in session.exec(select(Membership))}
    assert roles == {(1, Role.ADMIN), (2, Role.VIEWER)}
    assert verify_password(session.exec(select(User)).one(), ANA_PASSWORD)


@cache
def _ana_password_hash() -> str:
    return PasswordHasher().hash(ANA_PASSWORD)


@pytest.fixture
def ana(acme, session: Session) -> User:
    """An existing viewer of acme, written directly (one password hash per test session)."""
    user = User(email=ANA, password_hash=_ana_password_hash())
    session.add(user)
    session.flush()
    tenant = session.exec(select(Tenant).where(Tenant.slug == "acme")).one()
    session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=Role.VIEWER))
    session.commit()
    return user


@dataclass(frozen=True)
class ReportFile:
    """A report file argument: the example with `edit` applied, written under tmp_path."""

    edit: Callable[[dict], object]

    def write(self, directory: Path) -> str:
        data = yaml.safe_load(REPORT.read_text())
        self.edit(data)
        path = directory / "report.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)


@dataclass(frozen=True)
class Stdin:
    """What the command reads on stdin (not an argument)."""

    text: str


def _csv_filename(filename: str) -> ReportFile:
    return ReportFile(lambda d: d["csv"].update(filename=filename))


SCHEDULE = ["schedule", "add", "--tenant", "acme", "--report", "video-performance"]
TOO_MANY = [arg for i in range(21) for arg in ("--email", f"r{i}@example.com")]
NOT_ONE_LINE = "contains a line break or control character; write it on one line."

REFUSALS = [
    pytest.param(["tenant", "add", "other", "--name", "O", "--timezone", "Mars/Olympus"],
                 "Unknown timezone 'Mars/Olympus'; use an IANA name", id="tenant-timezone"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * *", "--timezone", "Europe/Narnia"],
                 "Invalid cron expression '0 9 * *'", id="cron-before-timezone"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--timezone", "Europe/Narnia"],
                 "Unknown timezone 'Europe/Narnia'", id="schedule-timezone"),
    pytest.param([*SCHEDULE, "--cron", "61 25 * * *"],
                 "Invalid cron expression '61 25 * * *'; use five fields", id="malformed-cron"),
    pytest.param([*SCHEDULE, "--cron", "0 0 9 * * *"],
                 "Invalid cron expression '0 0 9 * * *'", id="six-field-cron"),
    pytest.param([*SCHEDULE, "--cadence", "daily"],
                 "The daily cadence needs a time; set at to HH:MM", id="cadence-without-at"),
    pytest.param([*SCHEDULE, "--cadence", "daily", "--at", "9.30"],
                 "at '9.30' is not a time of day; write it as HH:MM", id="bad-hhmm"),
    pytest.param([*SCHEDULE, "--cadence", "daily", "--at", "24:00"],
                 "at '24:00' is not a time of day", id="hour-out-of-range"),
    pytest.param([*SCHEDULE, "--cadence", "hourly", "--at", "09:00"],
                 "Unknown cadence 'hourly'; use daily, weekly or monthly", id="bad-cadence"),
    pytest.param([*SCHEDULE], "A schedule needs cron or cadence; set cron to an expression", id="no-timing"),
    pytest.param([*SCHEDULE, "--cadence", "daily", "--at", "09:00", *TOO_MANY],
                 "21 recipients given; a schedule may have at most 20", id="too-many-recipients"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--email", "not-an-address"],
                 "'not-an-address' is not a valid e-mail address", id="invalid-email"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--telegram", "@somechat"],
                 "Telegram chat id '@somechat' is not numeric", id="non-numeric-chat"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--channel", "sms"],
                 "Unknown channel 'sms'; use email, telegram or both.", id="unknown-channel"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--email", "a@acme.example", "--channel", "telegram"],
                 "email recipients are given but channels leaves email out", id="channel-excludes-recipients"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--format", "docx"],
                 "Unknown format 'docx'; use one or more of pdf, csv and xlsx", id="bad-format"),
    pytest.param(["schedule", "add", "--tenant", "nobody", "--report", "video-performance",
                  "--cron", "0 9 * * *"], "No tenant 'nobody'", id="unknown-tenant"),
    pytest.param([*SCHEDULE[:-1], "no-such-report", "--cron", "0 9 * * *"],
                 "The report 'no-such-report' is not one of this tenant's reports", id="unknown-report"),
    pytest.param(["report", "add", "--tenant", "nobody", str(REPORT)],
                 "No tenant 'nobody'", id="report-unknown-tenant"),
    pytest.param(["tenant", "add", "acme", "--name", "Acme again"],
                 "A tenant with slug 'acme' already exists", id="duplicate-slug"),
    pytest.param(["tenant", "add", "Bad Slug", "--name", "X"],
                 "Tenant slug 'Bad Slug' is not valid", id="bad-slug"),
    pytest.param(["tenant", "add", "other", "--name", "O", "--email", "x@", "--telegram", "1"],
                 "'x@' is not a valid e-mail address", id="tenant-invalid-email"),
    pytest.param(["tenant", "add", "other", "--name", "O", "--datasource", "nonsense"],
                 "The data source is not a PostgreSQL or SQLite URL; write it like postgresql://",
                 id="bad-datasource"),
    pytest.param(["user", "add", "x@acme.example", "--tenant", "acme", "--role", "owner"],
                 "Unknown role 'owner'; use viewer, editor or admin", id="bad-role"),
    pytest.param(["schedule", "pause", "999"], "No schedule 999", id="unknown-schedule"),
    pytest.param(["cron", "next", "* * * *"], "Invalid cron expression", id="cron-next-malformed"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--subject", "Views\r\nBcc: x@evil.example"],
                 f"The subject {NOT_ONE_LINE}", id="subject-header-injection"),
    pytest.param([*SCHEDULE, "--cron", "0 9 * * *", "--subject", "Views\u2028{date}"],
                 f"The subject {NOT_ONE_LINE}", id="subject-line-separator"),
    pytest.param(["tenant", "add", "other", "--name", "Other\nBcc: x@evil.example"],
                 f"The tenant name {NOT_ONE_LINE}", id="tenant-name-newline"),
    pytest.param(["tenant", "add", "other", "--name", "Other\n"],
                 f"The tenant name {NOT_ONE_LINE}", id="tenant-name-trailing-newline"),
    pytest.param(["tenant", "add", "acme\n", "--name", "Acme"],
                 "Tenant slug 'acme\\n' is not valid; use lowercase letters", id="tenant-slug-newline"),
    pytest.param(["report", "add", "--tenant", "acme",
                  ReportFile(lambda d: d.update(title="Views\nBcc: x@evil.example"))],
                 f"report.yaml: title {NOT_ONE_LINE}", id="report-title-newline"),
    pytest.param(["report", "add", "--tenant", "acme", ReportFile(lambda d: d.update(slug="acme\n"))],
                 "report.yaml: slug 'acme\\n' is not valid; use lowercase letters", id="report-slug-newline"),
    pytest.param(["report", "add", "--tenant", "acme", _csv_filename("{slug:>2000000000}")],
                 "csv.filename uses {slug:>2000000000}; write {slug} without a format spec or conversion.",
                 id="csv-filename-format-spec"),
    pytest.param(["report", "add", "--tenant", "acme", _csv_filename("{date!r}.csv")],
                 "csv.filename uses {date!r}; write {date} without a format spec or conversion.",
                 id="csv-filename-conversion"),
    pytest.param(["report", "add", "--tenant", "acme", _csv_filename("..")],
                 "csv.filename names no file (it is empty, '.' or '..' once filled in)", id="csv-filename-dotdot"),
    pytest.param(["report", "add", "--tenant", "acme", _csv_filename("")],
                 "csv.filename names no file (it is empty, '.' or '..' once filled in)", id="csv-filename-empty"),
    pytest.param(["user", "add", ANA, "--tenant", "acme", "--role", "admin", "--password-stdin",
                  Stdin("a new password\n")],
                 f"User {ANA} already exists; `herald user add` does not change passwords, "
                 f"so leave out --password-stdin to add them to this tenant.", id="existing-user-password"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_invalid_input_is_one_sentence_exit_1_and_writes_nothing(
    cli, ana: User, session: Session, tmp_path: Path, args: list, message: str
) -> None:
    stdin = next((a.text for a in args if isinstance(a, Stdin)), None)
    args = [a.write(tmp_path) if isinstance(a, ReportFile) else a for a in args if not isinstance(a, Stdin)]
    before = row_counts(session)
    result = cli(*args, input=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert row_counts(session) == before
    if stdin is not None:  # a refused --password-stdin leaves the existing password as it was
        assert verify_password(session.exec(select(User).where(User.email == ANA)).one(), ANA_PASSWORD)
