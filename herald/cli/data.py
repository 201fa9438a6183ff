"""`herald db`, `herald tenant`, `herald report`, `herald user`: the data half of the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from herald.cli.common import JsonOption, print_json, reports_errors
from herald.cli.deleting import YesOption, confirm_deletion, goes_text
from models import migrate
from models.db import session_scope, utcnow
from models.definition import load_definition
from models.errors import HeraldError
from services import accounts, deletions, members, reports, tenants
from services.access import OPERATOR

db_app = typer.Typer(help="The control database.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants: organisations with their own data source.", no_args_is_help=True)
report_app = typer.Typer(help="Saved reports, defined in YAML.", no_args_is_help=True)
user_app = typer.Typer(help="Admin users and their tenant roles.", no_args_is_help=True)

@db_app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Create or migrate herald's tables in DATABASE_URL."""
    migrate.upgrade()
    typer.echo(f"database at revision {migrate.current_head()}")


@db_app.command("seed-demo")
@reports_errors
def db_seed_demo(
    data_url: Annotated[str, typer.Option(
        help="URL of the demo tenant's PostgreSQL database as a role that may create its table.")],
    datasource: Annotated[str, typer.Option(
        help="URL herald reads that database with (a SELECT-only role).")],
) -> None:
    """Seed the demo once, as the docker-compose stack does at each start: the tenant and its
    videos, the video-performance report, its e-mail schedules (one every minute) and the
    login from HERALD_DEMO_EMAIL and HERALD_DEMO_PASSWORD (a password is generated when unset).
    Nothing changes when the demo tenant exists."""
    from herald.demo import TEAM_EMAIL, new_login, seed_stack_demo

    migrate.require_current()
    login = new_login(os.environ)
    if not seed_stack_demo(data_url, datasource, login, utcnow()):
        typer.echo("the demo tenant exists; nothing seeded")
        return
    password = ("the password in HERALD_DEMO_PASSWORD" if login.from_environment
                else f"password {login.password}")
    typer.echo(f"demo seeded: tenant demo, report video-performance, a schedule every minute "
               f"to {TEAM_EMAIL}; log in to the admin as {login.email} with {password}")


@tenant_app.command("add")
@reports_errors
def tenant_add(
    slug: str,
    name: Annotated[str, typer.Option(help="Display name.")],
    timezone: Annotated[str, typer.Option(help="Default timezone for schedules (IANA).")] = "UTC",
    datasource: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the tenant's database.")] = None,
    email: Annotated[list[str], typer.Option(help="Tenant-wide fallback e-mail recipient.")] = [],  # noqa: B006
    telegram: Annotated[list[str], typer.Option(help="Tenant-wide fallback Telegram chat id.")] = [],  # noqa: B006
    json_out: JsonOption = False,
) -> None:
    """Add a tenant with its tenant-wide fallback recipients."""
    with session_scope() as session:
        tenant = tenants.add_tenant(session, OPERATOR, slug, name, timezone, datasource, email, telegram)
        data = tenants.tenant_to_dict(session, tenant)
    print_json(data) if json_out else typer.echo(f"tenant {data['slug']} added (id {data['id']})")


@tenant_app.command("grant-refresh")
@reports_errors
def tenant_grant_refresh(
    slug: str,
    url: Annotated[str, typer.Option(
        help="PostgreSQL URL of a role that owns the reports' materialized views.")],
) -> None:
    """Let the tenant's reports refresh materialized views (`refresh:`) before their queries,
    through this data source; the queries still read through the read-only one."""
    with session_scope() as session:
        tenants.grant_refresh(session, OPERATOR, tenants.get_tenant(session, OPERATOR, slug), url)
    typer.echo(f"tenant {slug} may refresh materialized views as {tenants.redact_url(url)}")


@tenant_app.command("set-spread")
@reports_errors
def tenant_set_spread(
    slug: str,
    seconds: Annotated[int, typer.Argument(help="Window after each slot, 0 (off) to 3600.")],
) -> None:
    """Spread the runs of the tenant's schedules over SECONDS after their slots, each schedule
    at its own second (schedules with their own --spread keep it)."""
    with session_scope() as session:
        moved = tenants.set_spread(session, OPERATOR, tenants.get_tenant(session, OPERATOR, slug), seconds)
    typer.echo(f"tenant {slug}: runs spread over {seconds} s after their slots "
               f"({moved} schedules replanned)")


@tenant_app.command("revoke-refresh")
@reports_errors
def tenant_revoke_refresh(slug: str) -> None:
    """Take the refresh data source away: reports with `refresh:` fail until it is granted again."""
    with session_scope() as session:
        tenants.grant_refresh(session, OPERATOR, tenants.get_tenant(session, OPERATOR, slug), None)
    typer.echo(f"tenant {slug} may no longer refresh materialized views")


@tenant_app.command("delete")
@reports_errors
def tenant_delete(slug: str, yes: YesOption = False) -> None:
    """Delete a tenant and all it holds: reports, schedules and their runs, memberships, API
    tokens, fallback recipients and its change audit. Its users keep their accounts and their
    other tenants. Asks first, naming what goes, unless the tenant is empty."""
    with session_scope() as session:
        goes = deletions.what_goes_with_tenant(session, OPERATOR, slug)
    if goes.anything:
        confirm_deletion(f"tenant {slug} holds {goes_text(goes)}", "delete it and all of that?", yes)
    with session_scope() as session:
        goes = deletions.delete_tenant(session, OPERATOR, slug)
    typer.echo(f"tenant {slug} deleted" + (f", with {goes_text(goes)}" if goes.anything else ""))


@report_app.command("add")
@reports_errors
def report_add(
    file: Annotated[Path, typer.Argument(help="Report definition (YAML).")],
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    json_out: JsonOption = False,
) -> None:
    """Create a report from FILE, or update the tenant's report with the same slug."""
    definition = load_definition(file)
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        report, created = reports.save_report(session, OPERATOR, owner, definition, str(file))
        data = {"id": report.id, "tenant": owner.slug, "slug": report.slug, "title": report.title,
                "created": created}
    if json_out:
        print_json(data)
    else:
        typer.echo(f"report {data['slug']} {'added' if created else 'updated'} (id {data['id']})")


@report_app.command("delete")
@reports_errors
def report_delete(
    slug: str,
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    with_schedules: Annotated[bool, typer.Option(
        "--with-schedules", help="Delete the report's schedules, and all their runs, with it.")] = False,
    yes: YesOption = False,
) -> None:
    """Delete a report. One that still has schedules is refused unless --with-schedules deletes
    them (and their runs) too. Asks first when runs or schedules go with it."""
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        goes = deletions.what_goes_with_report(session, OPERATOR, owner, slug)
    if goes.schedules and not with_schedules:
        raise HeraldError(f"Report {slug} has {deletions.schedules_text(goes.schedules)}; delete "
                          f"{'it' if len(goes.schedules) == 1 else 'them'} first (`herald schedule "
                          f"delete ID`), or add --with-schedules to delete them with the report.")
    if goes.anything:
        confirm_deletion(f"report {slug} of tenant {tenant} goes with {goes_text(goes)}",
                         "delete it and all of that?", yes)
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        goes = deletions.delete_report(session, OPERATOR, owner, slug, with_schedules=with_schedules,
                                       now=utcnow())
    typer.echo(f"report {slug} deleted" + (f", with {goes_text(goes)}" if goes.anything else ""))


@user_app.command("add")
@reports_errors
def user_add(
    email: str,
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    role: Annotated[str, typer.Option(help="viewer, editor or admin.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Give a user (created if new) a role in a tenant; an existing user's password is kept."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        grant = members.grant(session, OPERATOR, owner.id, email, role, password)
        data = {"id": grant.user_id, "email": grant.email, "tenant": owner.slug,
                "role": grant.role.value, "change": grant.change}
    if grant.previous_role is not None:
        data["previous_role"] = grant.previous_role.value
    if grant.generated_password:
        data["generated_password"] = grant.generated_password
    if json_out:
        print_json(data)
        return
    typer.echo(_describe_grant(data))
    if grant.generated_password:
        typer.echo(f"generated password (shown once): {grant.generated_password}")


@user_app.command("set-password")
@reports_errors
def user_set_password(
    email: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Reset a user's password (generated unless --password-stdin); their admin sessions end
    and any lockout is lifted."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with session_scope() as session:
        address, generated = accounts.reset_password(session, OPERATOR, email, password, utcnow())
    data = {"email": address, "password_changed": True}
    if generated:
        data["generated_password"] = generated
    if json_out:
        print_json(data)
        return
    typer.echo(f"password of {data['email']} changed; their admin sessions have ended")
    if generated:
        typer.echo(f"generated password (shown once): {generated}")


def _describe_grant(data: dict) -> str:
    """One line saying what `herald user add` changed."""
    who, role, tenant = f"user {data['email']} (id {data['id']})", data["role"], data["tenant"]
    if data["change"] == "created":
        return f"{who} created as {role} of {tenant}"
    if data["change"] == "added":
        return f"existing {who} added to {tenant} as {role}; password unchanged"
    if data["change"] == "role changed":
        return f"{who} is now {role} of {tenant} (was {data['previous_role']}); password unchanged"
    return f"{who} is already {role} of {tenant}; nothing changed"


def demo(
    directory: Annotated[Path, typer.Option(
        help="Where the demo keeps its SQLite files and the messages it captured.")] = Path("herald-demo"),
    reset: Annotated[bool, typer.Option(
        "--reset", help="Start over: delete the demo's history and captured messages first.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The admin's port.")] = 8501,
    smtp_port: Annotated[int, typer.Option(
        min=0, max=65535, help="The local SMTP server's port (0: any free port).")] = 0,
    telegram_port: Annotated[int, typer.Option(
        min=0, max=65535, help="The stand-in Telegram Bot API's port (0: any free port).")] = 0,
    admin: Annotated[bool, typer.Option("--admin/--no-admin", help="Start the admin.")] = True,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="The HTTP API's port.")] = 8000,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the HTTP API.")] = True,
) -> None:
    """Run the whole herald in this process on SQLite files in DIRECTORY until Ctrl-C: workers,
    the minute tick, a local SMTP server and Telegram stand-in that keep what they receive, and
    the admin and the HTTP API. A report is delivered every minute; running it again keeps the
    history."""
    from herald.demo_run import DemoOptions, run_demo

    run_demo(DemoOptions(directory, reset, port, smtp_port, telegram_port, admin, api_port, api),
             say=typer.echo)
