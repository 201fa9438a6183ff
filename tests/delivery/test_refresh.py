"""`refresh:` materialized views before the queries, through a separately granted data source.

The tenant database is real PostgreSQL: the report reads `daily_totals` through the
SELECT-only role, and the view belongs to a second role that the tenant grants to herald
for refreshing only. The refresh runs in a transaction of its own: when one view of the
list cannot be refreshed, none is, and the run fails with the reason.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy.engine import make_url

from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.errors import InvalidInput
from models.runs import ReportRun
from pipeline.in_process import run_in_process
from tests.delivery.conftest import csv_rows
from tests.delivery.servers import MailSink
from tests.seeding import add_schedule, add_tenant, grant_refresh, manual_run, save_report

READER = "finance@acme.example"
REPORT = {
    "slug": "totals", "title": "Totals",
    "refresh": ["daily_totals", "public.by_title"],
    "csv": {"sql": "SELECT total FROM daily_totals"},
}


@dataclass
class Tenant:
    admin: str      # psycopg URL of the database's superuser
    reader: str     # SQLAlchemy URL of the SELECT-only role herald queries with
    owner: str      # SQLAlchemy URL of the role that owns the views


@pytest.fixture
def tenant_db(create_tenant_database) -> Iterator[Tenant]:
    db = create_tenant_database()
    admin = db.admin_url.replace("+psycopg", "")
    role = f"herald_owner_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'owner-pw'")
        conn.execute(f'GRANT CONNECT ON DATABASE "{make_url(db.url).database}" TO {role}')
        conn.execute("CREATE TABLE sales (title text, amount int)")
        conn.execute("INSERT INTO sales VALUES ('a', 10), ('b', 20)")
        conn.execute(f"GRANT SELECT ON sales TO {role}")
        conn.execute("CREATE MATERIALIZED VIEW daily_totals AS SELECT sum(amount) AS total FROM sales")
        conn.execute("CREATE MATERIALIZED VIEW by_title AS SELECT title, sum(amount) AS amount FROM sales GROUP BY title")
        conn.execute(f"ALTER MATERIALIZED VIEW daily_totals OWNER TO {role}")
        conn.execute(f"ALTER MATERIALIZED VIEW by_title OWNER TO {role}")
        conn.execute("INSERT INTO sales VALUES ('c', 70)")  # not in the views until a refresh
    owner = make_url(db.url).set(username=role, password="owner-pw").render_as_string(hide_password=False)
    yield Tenant(admin=admin, reader=db.url, owner=owner)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        conn.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(admin.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def view_total(tenant: Tenant) -> int:
    with psycopg.connect(tenant.admin) as conn:
        return conn.execute("SELECT total FROM daily_totals").fetchone()[0]


def schedule(tenant: Tenant, grant: str | None) -> int:
    with session_scope() as session:
        acme = add_tenant(session, "acme", "Acme Corp", "UTC", tenant.reader)
        if grant:
            grant_refresh(session, acme, grant)
        save_report(session, acme, parse_definition(REPORT))
        return add_schedule(session, acme, "totals", now=utcnow(),
                            cadence="daily", at="09:00", formats=["csv"], emails=[READER]).id


def test_views_are_refreshed_before_the_queries_through_the_granted_source(
    db_url: str, tenant_db: Tenant, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db, tenant_db.owner)

    run_in_process(manual_run(schedule_id))

    [mail] = mail_sink.to(READER)
    [document] = mail.attachments().values()
    assert csv_rows(document) == [["total"], ["100"]]  # 10 + 20 + the 70 added after the view


def test_a_failing_refresh_fails_the_run_with_its_reason_and_refreshes_nothing(
    db_url: str, tenant_db: Tenant, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db, tenant_db.owner)
    with psycopg.connect(tenant_db.admin, autocommit=True) as conn:  # the second view changes hands
        conn.execute("ALTER MATERIALIZED VIEW by_title OWNER TO CURRENT_USER")

    run_id = manual_run(schedule_id)
    run_in_process(run_id)

    with session_scope() as session:
        run = session.get(ReportRun, run_id)
        assert run.status == "failed"
        assert run.error.startswith("The refresh data source's role may not refresh public.by_title "
                                    "(must be owner of materialized view by_title); make that role the "
                                    "view's owner (ALTER MATERIALIZED VIEW public.by_title OWNER TO …).")
        assert run.error.endswith("No view was refreshed.")
    assert view_total(tenant_db) == 30  # daily_totals, refreshed first, was rolled back
    assert mail_sink.mails == []


def test_a_refresh_needs_an_explicit_grant(db_url: str, tenant_db: Tenant) -> None:
    with session_scope() as session:
        acme = add_tenant(session, "acme", "Acme Corp", "UTC", tenant_db.reader)
        with pytest.raises(InvalidInput, match=r"The report refreshes daily_totals, public.by_title before "
                                               r"its queries, and tenant 'acme' granted no refresh data source"):
            save_report(session, acme, parse_definition(REPORT))
        # A superuser may not be granted: it could do far more than refresh.
        with pytest.raises(InvalidInput, match=r"The refresh data source's role '\w+' is a superuser"):
            grant_refresh(session, acme, tenant_db.admin)


def test_the_cli_grants_and_revokes_and_a_revoked_grant_fails_the_run(
    db_url: str, tenant_db: Tenant, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db, tenant_db.owner)
    herald = lambda *args: subprocess.run(["herald", *args], capture_output=True, text=True,  # noqa: E731
                                          env=os.environ, timeout=120)
    done = herald("tenant", "revoke-refresh", "acme")
    assert done.returncode == 0, done.stderr
    assert "owner-pw" not in done.stdout + done.stderr

    run_id = manual_run(schedule_id)
    run_in_process(run_id)
    with session_scope() as session:
        assert session.get(ReportRun, run_id).error == (
            "Report 'totals' refreshes daily_totals, public.by_title first, but tenant 'acme' granted no "
            "refresh data source; grant one with `herald tenant grant-refresh acme --url <the views' "
            "owner's PostgreSQL URL>`, or remove refresh:.")

    done = herald("tenant", "grant-refresh", "acme", "--url", tenant_db.owner)
    assert done.returncode == 0, done.stderr
    assert "owner-pw" not in done.stdout and "***" in done.stdout
    run_in_process(manual_run(schedule_id))
    assert len(mail_sink.to(READER)) == 1
