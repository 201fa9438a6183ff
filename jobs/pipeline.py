"""The pipeline's stages as plain functions of a run id: query → render → deliver.

Actors call these; tests and `herald run` call them directly. Each stage checks
the run is still this worker's (status RUNNING) and holds its lease while it works.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from jobs import metrics
from jobs.conditions import unmet
from jobs.deliver import deliver_run
from jobs.outbox import claim_run, finish_run, holding_lease, note_error, release_run
from models.artifacts import (
    QUERY_RESULT,
    read_content,
    run_artifact,
    store_artifact,
    store_artifact_file,
)
from models.base import Format
from models.db import get_engine, session_scope, utcnow
from models.definition import ChartSection, KpiSection, ReportDefinition, SendIf, TableSection
from models.errors import InvalidInput, QueryError, RenderError
from models.periods import Period, explicit, from_params, latest_complete, period_for
from models.reports import Report
from models.runs import ReportRun, RunStatus, announce, run_change
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from renderers import RENDERERS, Document, RenderJob
from tenantdb import QueryResult, TenantSource, check_columns, open_source
from tenantdb.refresh import refresh_views

log = logging.getLogger("herald.pipeline")
CHART_MAX_ROWS = 5000


def _lease() -> timedelta:
    return timedelta(seconds=get_settings().lease_seconds)


def _load(session: Session, run_id: int) -> tuple[Schedule, Report, Tenant]:
    run = session.get(ReportRun, run_id)
    schedule = session.get(Schedule, run.schedule_id)
    return schedule, session.get(Report, schedule.report_id), session.get(Tenant, run.tenant_id)


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
        where = f"sections[{i}] ({section.title!r})"
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


RENDER, DELIVER = "render", "deliver"


def query_stage(run_id: int) -> str | None:
    """Claim the run and query the tenant's data; returns the stage that should follow.

    A run taken over from a dead worker whose documents were already rendered goes
    straight to delivery, so its recipients get the same documents as any sent before.
    """
    lease = _lease()
    before = _status(run_id)  # for the log line: queued, or running under an expired lease
    if not claim_run(run_id, utcnow(), lease):
        log.info("run %s is not claimable (finished, or another worker holds it)", run_id)
        return None
    announce(get_engine(), [run_change(run_id, before, RunStatus.RUNNING)])
    try:
        return _query_claimed(run_id, lease)
    except Exception as exc:
        # Unexpected (tenant DB unreachable, a bug): hand the run back and let Dramatiq
        # retry; `max_run_attempts` bounds how often.
        release_run(run_id, utcnow(), f"{type(exc).__name__}: {exc}")
        announce(get_engine(), [run_change(run_id, RunStatus.RUNNING, RunStatus.QUEUED)])
        raise


def _rendered(session: Session, run_id: int, formats: list[str]) -> bool:
    return all(run_artifact(session, run_id, f) is not None for f in formats)


def _query_claimed(run_id: int, lease: timedelta) -> str | None:
    with holding_lease(run_id, lease):
        with session_scope() as session:
            schedule, report, tenant = _load(session, run_id)
            if _rendered(session, run_id, schedule.formats):
                return DELIVER
            definition = report.parsed()
            params = {**definition.params, **schedule.params}
            datasource = tenant.datasource_url
            run = session.get(ReportRun, run_id)
            slot = run.scheduled_for
            # A test send shows what recipients would get, whatever the condition says.
            send_if = "always" if run.test else (schedule.send_if or definition.send_if)
        try:
            period = slot_period(schedule, definition, slot)
        except InvalidInput as exc:
            finish_run(run_id, RunStatus.FAILED, utcnow(), str(exc))
            return None
        if not datasource:
            finish_run(run_id, RunStatus.FAILED, utcnow(), no_datasource(tenant))
            return None
        try:
            # Sections feed the PDF; a CSV-only schedule does not run them.
            with metrics.QUERY_SECONDS.time():
                skipped, sections = read_run(tenant, definition, send_if, with_period(params, period),
                                             with_sections=Format.PDF in schedule.formats)
        except QueryError as exc:
            finish_run(run_id, RunStatus.FAILED, utcnow(), str(exc))
            return None
        if skipped is not None:
            finish_run(run_id, RunStatus.SKIPPED, utcnow(), skipped)
            return None
        with session_scope() as session:
            # The period is stored with the parameters: rendering and the letter read the same one.
            stored = {**params, **{k: v.isoformat() for k, v in with_period({}, period).items()}}
            content = json.dumps({"params": stored, "sections": sections}).encode()
            store_artifact(session, run_id=run_id, kind=QUERY_RESULT, filename=f"run-{run_id}.json",
                           media_type="application/json", source=content, now=utcnow())
        metrics.ARTIFACT_BYTES.labels(QUERY_RESULT).inc(len(content))
    return RENDER


def slot_period(schedule: Schedule, definition: ReportDefinition, slot: datetime) -> Period | None:
    """The period a slot reports on: the report's `period:`, else the schedule's natural one."""
    return period_for(slot, schedule.timezone, cadence=schedule.cadence, cron_expr=schedule.cron,
                      kind=definition.period)


def with_period(params: dict[str, Any], period: Period | None) -> dict[str, Any]:
    """The query parameters with :period_start and :period_end bound (they win over params)."""
    return {**params, **period.params()} if period else params


def _status(run_id: int) -> RunStatus | None:
    with session_scope() as session:
        run = session.get(ReportRun, run_id)
        return run.status if run else None


def _still_running(run_id: int) -> bool:
    with session_scope() as session:
        return session.get(ReportRun, run_id).status == RunStatus.RUNNING


def render_job(definition: ReportDefinition, params: dict[str, Any], tenant: Tenant, timezone: str,
               results: list[dict[str, Any]], slot: datetime, now: datetime,
               compress: bool = True) -> RenderJob:
    """What the renderers get: times in `timezone`, files named for the slot's local date."""
    zone = ZoneInfo(timezone)
    return RenderJob(definition=definition, results=results, params=params, tenant=tenant.name,
                     datasource_url=tenant.datasource_url or "", generated_at=now.astimezone(zone),
                     period=slot.astimezone(zone).date(), compress=compress,
                     tenant_key=f"tenant-{tenant.id}", timezone=tenant.timezone)


def no_refresh_grant(tenant: Tenant, definition: ReportDefinition) -> str:
    return (f"Report {definition.slug!r} refreshes {', '.join(definition.refresh)} first, but tenant "
            f"{tenant.slug!r} granted no refresh data source; grant one with `herald tenant "
            f"grant-refresh {tenant.slug} --url <the views' owner's PostgreSQL URL>`, or remove "
            f"refresh:.")


def no_datasource(tenant: Tenant) -> str:
    return (f"Tenant {tenant.slug!r} has no data source; give the tenant one (its datasource URL) "
            f"before running its reports.")


def render_stage(run_id: int) -> bool:
    """Render each of the schedule's formats into an artifact; True when delivery should follow."""
    if not _still_running(run_id):
        return False
    with holding_lease(run_id, _lease()):
        with session_scope() as session:
            run = session.get(ReportRun, run_id)
            schedule, report, tenant = _load(session, run_id)
            stored = json.loads(read_content(session, run_artifact(session, run_id, QUERY_RESULT).id))
            params = with_period(stored["params"], from_params(stored["params"], ZoneInfo(schedule.timezone)))
            job = render_job(report.parsed(), params, tenant, schedule.timezone,
                             stored["sections"], run.scheduled_for, utcnow())
            formats = [Format(f) for f in schedule.formats]
        try:
            with tempfile.TemporaryDirectory(prefix=f"herald-run-{run_id}-") as directory:
                for fmt in formats:
                    with metrics.RENDER_SECONDS.labels(fmt.value).time():
                        document = RENDERERS[fmt](job, Path(directory))
                    with session_scope() as session:
                        store_artifact_file(session, document.path, run_id=run_id, kind=fmt.value,
                                            filename=document.filename,
                                            media_type=document.media_type, now=utcnow(),
                                            rows=document.rows)
                    metrics.ARTIFACT_BYTES.labels(fmt.value).inc(document.size)
                    log.info("run %s: %s rendered (%d bytes)", run_id, document.filename, document.size)
        except QueryError as exc:  # the CSV query: permanent
            finish_run(run_id, RunStatus.FAILED, utcnow(), str(exc))
            return False
        except RenderError as exc:  # the browser: transient, retried by Dramatiq, bounded by attempts
            note_error(run_id, f"render: {exc}")
            raise
    return True


def deliver_stage(run_id: int) -> None:
    """Send to every recipient not yet sent to, and record the run's end state."""
    if not _still_running(run_id):
        return
    with holding_lease(run_id, _lease()):
        deliver_run(run_id)


def export_report(tenant_slug: str, report_slug: str, fmt: Format, target: Path,
                  now: datetime, bounds: tuple[datetime, datetime] | None = None) -> Document:
    """Render a report on demand with its default parameters, outside any schedule: for the
    period [start, end) in `bounds` (naive times in the tenant's timezone), or else the latest
    complete one as of `now` (see `latest_complete`)."""
    from models.catalog import get_report, get_tenant

    with session_scope() as session:
        tenant = get_tenant(session, tenant_slug)
        report = get_report(session, tenant, report_slug)
        definition = report.parsed()
    if not tenant.datasource_url:
        raise QueryError(no_datasource(tenant))
    params = export_params(definition, tenant.timezone, now, bounds)
    results = query_sections(tenant.datasource_url, definition, params) if fmt == Format.PDF else []
    job = render_job(definition, params, tenant, tenant.timezone, results, now, now, compress=False)
    with tempfile.TemporaryDirectory(prefix="herald-export-") as directory:
        document = RENDERERS[fmt](job, Path(directory))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(document.path, target)
    return replace(document, path=target)


def export_params(definition: ReportDefinition, timezone: str, now: datetime,
                  bounds: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """A report's parameters outside any schedule (export, preview, download): its defaults,
    and the period in `bounds` or else the latest complete one as of `now`."""
    if bounds is not None:
        period = explicit(*bounds, timezone)
    else:
        period = latest_complete(now, timezone, definition.period)
    return with_period(dict(definition.params), period)


def run_pipeline(run_id: int) -> None:
    """The whole pipeline for one run, synchronously in this process (`herald run`)."""
    following = query_stage(run_id)
    if following == DELIVER or (following == RENDER and render_stage(run_id)):
        deliver_stage(run_id)
