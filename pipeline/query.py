"""The query step: take the run and read the report's data from the tenant's database.

`query_run` is the first step of every run (the `query_stage` actor calls it): it takes the run
under a lease, refreshes the report's views, decides `send_if`, reads the sections the PDF
needs in one read-only transaction, and stores them for the render step. A run ends here when
its report cannot be queried (FAILED) or its condition is not met (SKIPPED).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from models.artifacts import QUERY_RESULT, run_artifact, store_artifact
from models.base import Format
from models.db import session_scope, utcnow
from models.definition import (
    ChartSection,
    KpiSection,
    ReportDefinition,
    SendIf,
    TableSection,
    section_name,
)
from models.errors import InvalidInput, QueryError
from models.periods import Period, explicit, latest_complete, period_for
from models.reports import Report
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline import metrics
from pipeline.conditions import unmet
from pipeline.leases import holding_lease, lease_length, release_run, take_run
from pipeline.lifecycle import end_run
from tenantdb import QueryResult, TenantSource, check_columns, open_source
from tenantdb.refresh import refresh_views

log = logging.getLogger("herald.pipeline")
CHART_MAX_ROWS = 5000
RENDER, DELIVER = "render", "deliver"  # the step that follows a query


def query_run(run_id: int) -> str | None:
    """Take the run and query the tenant's data; returns the step that should follow
    (RENDER, DELIVER) or None when the run ended here or is not this worker's.

    A run taken over from a dead worker whose documents were already rendered goes
    straight to delivery, so its recipients get the same documents as any sent before.
    """
    lease = lease_length()
    if not take_run(run_id, utcnow(), lease):
        log.info("run %s cannot be taken (ended, or another worker holds it)", run_id)
        return None
    try:
        return _query_taken(run_id, lease)
    except Exception as exc:
        # Unexpected (tenant DB unreachable, a bug): hand the run back and let Dramatiq
        # retry; `max_run_attempts` bounds how often.
        release_run(run_id, utcnow(), f"{type(exc).__name__}: {exc}")
        raise


def _query_taken(run_id: int, lease: timedelta) -> str | None:
    with holding_lease(run_id, lease):
        with session_scope() as session:
            run, schedule, report, tenant = load_run(session, run_id)
            if all(run_artifact(session, run_id, f) is not None for f in schedule.formats):
                return DELIVER
            definition = report.parsed()
            params = {**definition.params, **schedule.params}
            # A test send shows what recipients would get, whatever the condition says.
            send_if = "always" if run.test else (schedule.send_if or definition.send_if)
        try:
            period = slot_period(schedule, definition, run.scheduled_for)
        except InvalidInput as exc:
            return end_by_id(run_id, RunStatus.FAILED, str(exc))
        if not tenant.datasource_url:
            return end_by_id(run_id, RunStatus.FAILED, no_datasource(tenant))
        try:
            # Sections feed the PDF; a CSV-only schedule does not run them.
            with metrics.QUERY_SECONDS.time():
                skipped, sections = read_run(tenant, definition, send_if, with_period(params, period),
                                             with_sections=Format.PDF in schedule.formats)
        except QueryError as exc:
            return end_by_id(run_id, RunStatus.FAILED, str(exc))
        if skipped is not None:
            return end_by_id(run_id, RunStatus.SKIPPED, skipped)
        with session_scope() as session:
            # The period is stored with the parameters: rendering and the letter read the same one.
            stored = {**params, **{k: v.isoformat() for k, v in with_period({}, period).items()}}
            content = json.dumps({"params": stored, "sections": sections}).encode()
            store_artifact(session, run_id=run_id, kind=QUERY_RESULT, filename=f"run-{run_id}.json",
                           media_type="application/json", source=content, now=utcnow())
        metrics.ARTIFACT_BYTES.labels(QUERY_RESULT).inc(len(content))
    return RENDER


def load_run(session: Session, run_id: int) -> tuple[ReportRun, Schedule, Report, Tenant]:
    run = session.get(ReportRun, run_id)
    schedule = session.get(Schedule, run.schedule_id)
    return run, schedule, session.get(Report, schedule.report_id), session.get(Tenant, run.tenant_id)


def end_by_id(run_id: int, status: RunStatus, error: str | None) -> None:
    """End the run in a transaction of its own (`pipeline.lifecycle.end_run`)."""
    with session_scope() as session:
        end_run(session, session.get(ReportRun, run_id, with_for_update=True), status, utcnow(), error)


def query_sections(datasource_url: str, definition: ReportDefinition,
                   params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every section's rows from the tenant's database, checked against what the section needs."""
    with open_source(datasource_url, get_settings().query_timeout_seconds) as source:
        return read_sections(source, definition, params)


def read_sections(source: TenantSource, definition: ReportDefinition,
                  params: dict[str, Any]) -> list[dict[str, Any]]:
    settings = get_settings()
    results = []
    for i, section in enumerate(definition.sections):
        where = section_name(i, section.title)
        cap = {KpiSection: 1, ChartSection: CHART_MAX_ROWS}.get(type(section))
        if isinstance(section, TableSection):
            cap = section.max_rows or settings.pdf_table_max_rows
        result: QueryResult = source.query(section.sql, params, cap=cap, where=where)
        check_columns(section, result.columns, where)
        results.append({"kind": section.kind, "title": section.title,
                        "columns": result.columns, "rows": result.rows, "total": result.total})
    return results


def read_run(tenant: Tenant, definition: ReportDefinition, send_if: SendIf, params: dict[str, Any],
             with_sections: bool) -> tuple[str | None, list[dict[str, Any]]]:
    """Refresh the report's views, then in one read-only transaction read its send_if and
    (when it is met and the PDF needs them) its sections: (why it is skipped or None, sections)."""
    settings = get_settings()
    if definition.refresh:
        if not tenant.refresh_url:
            raise QueryError(no_refresh_grant(tenant, definition))
        refresh_views(tenant.refresh_url, definition.refresh, settings.refresh_timeout_seconds)
    with open_source(tenant.datasource_url, settings.query_timeout_seconds) as source:
        skipped = unmet(source, send_if, definition, params)
        if skipped is not None or not with_sections:
            return skipped, []
        return None, read_sections(source, definition, params)


def slot_period(schedule: Schedule, definition: ReportDefinition, slot: datetime) -> Period | None:
    """The period a slot reports on: the report's `period:`, else the schedule's natural one."""
    return period_for(slot, schedule.timezone, cadence=schedule.cadence, cron_expr=schedule.cron,
                      kind=definition.period)


def with_period(params: dict[str, Any], period: Period | None) -> dict[str, Any]:
    """The query parameters with :period_start and :period_end bound (they win over params)."""
    return {**params, **period.params()} if period else params


def export_params(definition: ReportDefinition, timezone: str, now: datetime,
                  bounds: tuple[datetime, datetime] | None = None,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A report's parameters outside any schedule (export, preview, download): its defaults
    (or `params`, already typed, over them), and the period in `bounds` or else the latest
    complete one as of `now`."""
    if bounds is not None:
        period = explicit(*bounds, timezone)
    else:
        period = latest_complete(now, timezone, definition.period)
    return with_period({**definition.params, **(params or {})}, period)


def no_refresh_grant(tenant: Tenant, definition: ReportDefinition) -> str:
    return (f"Report {definition.slug!r} refreshes {', '.join(definition.refresh)} first, but tenant "
            f"{tenant.slug!r} granted no refresh data source; grant one with `herald tenant "
            f"grant-refresh {tenant.slug} --url <the views' owner's PostgreSQL URL>`, or remove "
            f"refresh:.")


def no_datasource(tenant: Tenant) -> str:
    return (f"Tenant {tenant.slug!r} has no data source; give the tenant one (its datasource URL) "
            f"before running its reports.")
