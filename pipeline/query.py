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

import sqlalchemy as sa
from sqlmodel import Session

from models.artifacts import QUERY_RESULT, store_artifact
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
from models.runs import Artifact, ReportRun, RunStatus, ShareState
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from pipeline import metrics, sharing
from pipeline.carried import Carried
from pipeline.conditions import unmet
from pipeline.leases import holding_lease, lease_length, release_run, take
from pipeline.lifecycle import end_run
from tenantdb import QueryResult, TenantSource, check_columns, open_source
from tenantdb.refresh import refresh_views

log = logging.getLogger("herald.pipeline")
CHART_MAX_ROWS = 5000
RENDER, DELIVER = "render", "deliver"  # the step that follows a query


def query_run(run_id: int, carried: Carried | None = None) -> str | None:
    """Take the run and query the tenant's data; returns the step that should follow
    (RENDER, DELIVER) or None when the run ended here or is not this worker's.

    A run taken over from a dead worker whose documents were already rendered goes
    straight to delivery, so its recipients get the same documents as any sent before.
    With `carried`, what was read and stored is handed on to the render stage.
    """
    lease = lease_length()
    with session_scope() as session:  # taken, and read with what it has stored, in one transaction
        taken = take(session, run_id, utcnow(), lease)
        if taken:
            rows, kinds = load_run_and_kinds(session, run_id)
    if not taken:
        log.info("run %s cannot be taken (ended, or another worker holds it)", run_id)
        return None
    try:
        return _query_taken(run_id, lease, carried, rows, kinds)
    except Exception as exc:
        # Unexpected (tenant DB unreachable, a bug), or the render this run waited for failed:
        # hand the run back and let Dramatiq retry; `max_run_attempts` bounds how often. A run
        # that led a shared render lets the next attempt (its own or a waiter's) lead it.
        error = str(exc) if isinstance(exc, sharing.SharedRenderFailed) else f"{type(exc).__name__}: {exc}"
        sharing.finish(run_id, ShareState.RETRY, error)
        release_run(run_id, utcnow(), error)
        raise


def _query_taken(run_id: int, lease: timedelta, carried: Carried | None,
                 rows: tuple[ReportRun, Schedule, Report, Tenant], kinds: set[str]) -> str | None:
    run, schedule, report, tenant = rows
    with holding_lease(run_id, lease):
        if carried is not None:
            carried.rows, carried.kinds = rows, kinds
        if all(f in kinds for f in schedule.formats):
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
        share, leading = None, False
        # Runs due at a slot share; send now and test sends render what the data says now.
        if get_settings().share_renders and not (run.manual or run.test):
            key = sharing.share_key(run, schedule, report, tenant, with_period(params, period), send_if,
                                    get_settings())
            share, joined = sharing.join(run_id, tenant.id, key, replace=bool(kinds))
            leading = joined.leading
            if not leading:
                following = follow_share(run_id, share, joined if joined.state else None,
                                         replace=bool(kinds), carried=carried)
                if following is not None:
                    return following or None
        try:
            # Sections feed the PDF; a CSV-only schedule does not run them.
            with metrics.QUERY_SECONDS.time():
                skipped, sections = read_run(tenant, definition, send_if, with_period(params, period),
                                             with_sections=Format.PDF in schedule.formats)
        except QueryError as exc:
            if share is not None:
                sharing.finish(run_id, ShareState.FAILED, str(exc))
            return end_by_id(run_id, RunStatus.FAILED, str(exc))
        if skipped is not None:
            if share is not None:
                sharing.finish(run_id, ShareState.SKIPPED, skipped)
            return end_by_id(run_id, RunStatus.SKIPPED, skipped)
        with session_scope() as session:
            # The period is stored with the parameters: rendering and the letter read the same
            # one; and the share the run leads, which its render reports to.
            stored = {**params, **{k: v.isoformat() for k, v in with_period({}, period).items()}}
            content = json.dumps({"params": stored, "sections": sections, "share": share}).encode()
            store_artifact(session, run_id=run_id, kind=QUERY_RESULT, filename=f"run-{run_id}.json",
                           media_type="application/json", source=content, now=utcnow(),
                           replace=QUERY_RESULT in kinds)
        metrics.ARTIFACT_BYTES.labels(QUERY_RESULT).inc(len(content))
        if carried is not None:
            # as the render stage would read it back: JSON's types, not the driver's
            carried.stored, carried.leads = json.loads(content), share if leading else None
    return RENDER


def follow_share(run_id: int, share: int, known: sharing.Outcome | None = None,
                 replace: bool = True, carried: Carried | None = None) -> str | None:
    """Wait for the render the run shares (unless its outcome is `known`) and end or go on as
    it did: DELIVER with its documents (handed on in `carried`), "" when the run ended (skipped
    or failed as it did), None when this run leads now (its leader died, or failed and this
    attempt is the next). Raises SharedRenderFailed when the leader's attempt failed: this run
    is retried as the leader's run is. `replace=False`: the run has stored nothing its
    documents must replace."""
    outcome = known or sharing.wait(share, run_id)
    if outcome.leading:
        return None
    if outcome.state == ShareState.READY:
        given = outcome.given if outcome.given is not None else \
            sharing.reuse(run_id, outcome.leader_run_id, replace)
        if carried is not None:
            carried.shared = given
        return DELIVER
    if outcome.state in (ShareState.SKIPPED, ShareState.FAILED):
        end_by_id(run_id, RunStatus(outcome.state.value), outcome.error)
        return ""
    raise sharing.SharedRenderFailed(outcome.error or "the shared render failed")


def load_run(session: Session, run_id: int) -> tuple[ReportRun, Schedule, Report, Tenant]:
    """The run with its schedule, report and tenant, in one statement."""
    return tuple(session.execute(_joined(run_id)).one())


def load_run_and_kinds(session: Session,
                       run_id: int) -> tuple[tuple[ReportRun, Schedule, Report, Tenant], set[str]]:
    """`load_run`, and the kinds of artifact the run has stored (its query result, its
    documents), in one statement."""
    kinds = (sa.select(sa.func.aggregate_strings(Artifact.kind, ","))
             .where(Artifact.run_id == ReportRun.id).scalar_subquery())
    *rows, stored = session.execute(_joined(run_id).add_columns(kinds)).one()
    return tuple(rows), set(stored.split(",")) if stored else set()


def _joined(run_id: int) -> sa.Select:
    return (sa.select(ReportRun, Schedule, Report, Tenant)
            .join(Schedule, Schedule.id == ReportRun.schedule_id)
            .join(Report, Report.id == Schedule.report_id)
            .join(Tenant, Tenant.id == ReportRun.tenant_id)
            .where(ReportRun.id == run_id))


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
