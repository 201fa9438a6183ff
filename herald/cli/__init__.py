"""The `herald` command (Typer). Each sub-command lives in a module of this package."""

from __future__ import annotations

import typer

from herald.cli.admin import admin_command
from herald.cli.api import api_command
from herald.cli.common import before_body, reports_errors
from herald.cli.data import db_app, demo, report_app, tenant_app, user_app
from herald.cli.health import health_command
from herald.cli.metrics import metrics_command
from herald.cli.runs import (
    export_command,
    resend_command,
    run_command,
    runs_command,
    send_now,
    send_test_command,
    tick_command,
)
from herald.cli.schedules import cron_app, schedule_app
from herald.cli.tokens import token_app
from models import migrate
from models.logs import configure_logging
from models.settings import get_settings

app = typer.Typer(
    name="herald",
    help="Scheduled report delivery: PDF, CSV and XLSX by e-mail and Telegram.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    add_completion=False,
)


# Commands that need no herald tables, or make them.
WITHOUT_SCHEMA = {"db", "demo", "cron"}


@app.callback()
@reports_errors
def load_configuration(ctx: typer.Context) -> None:
    """Read the settings first, so a bad variable fails every command the same way; log as
    they say. A command's body (not its `--help`) then refuses a database whose schema this
    herald does not match, or that does not exist, saying what to run."""
    configure_logging(get_settings())
    if ctx.invoked_subcommand not in WITHOUT_SCHEMA:
        before_body(ctx, migrate.require_current)


app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(report_app, name="report")
app.add_typer(schedule_app, name="schedule")
app.add_typer(user_app, name="user")
app.add_typer(cron_app, name="cron")
app.add_typer(token_app, name="token")
app.command("demo")(reports_errors(demo))
app.command("tick")(tick_command)
app.command("send-now")(send_now)
app.command("send-test")(send_test_command)
app.command("resend")(resend_command)
app.command("run")(run_command)
app.command("runs")(runs_command)
app.command("export")(export_command)
app.command("admin")(admin_command)
app.command("api")(api_command)
app.command("health")(health_command)
app.command("metrics")(metrics_command)


def main() -> None:
    app()
