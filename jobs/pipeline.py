"""The pipeline's stages as plain functions of a run id: query → render → deliver.

Actors call these; tests and `herald run` call them directly. Each stage checks
the run is still this worker's (status RUNNING) and holds its lease while it works.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from jobs.outbox import claim_run, finish_run, holding_lease, release_run
from models.artifacts import store_artifact
from models.datasource import QueryResult, read_only, run_query
from models.db import session_scope, utcnow
from models.definition import ChartSection, KpiSection, ReportDefinition, TableSection
from models.errors import QueryError
from models.redact import redact
from models.reports import Report
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant

log = logging.getLogger("herald.pipeline")
QUERY_RESULT = "query-result"
CHART_MAX_ROWS = 5000


def _lease() -> timedelta:
    return timedelta(seconds=get_settings().lease_seconds)


def _load(session: Session, run_id: int) -> tuple[Schedule, Report, Tenant]:
    run = session.get(ReportRun, run_id)
    schedule = session.get(Schedule, run.schedule_id)
    return schedule, session.get(Report, schedule.report_id), session.get(Tenant, run.tenant_id)


def required_columns(section: Any) -> list[str]:
    if isinstance(section, KpiSection):
        return [section.column]
    if isinstance(section, ChartSection):
        return [c for c in (section.chart.x, section.chart.y, section.chart.color) if c]
    return []


def query_sections(datasource_url: str, definition: ReportDefinition,
                   params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every section's rows from the tenant's database, checked against what the section needs."""
    settings = get_settings()
    timeout = settings.query_timeout_seconds
    results = []
    with read_only(datasource_url, timeout) as conn:
        for i, section in enumerate(definition.sections):
            where = f"sections[{i}] ({section.title!r})"
            cap = {KpiSection: 1, ChartSection: CHART_MAX_ROWS}.get(type(section))
            if isinstance(section, TableSection):
                cap = section.max_rows or settings.pdf_table_max_rows
            result: QueryResult = run_query(conn, section.sql, params, cap, where, timeout)
            missing = [c for c in required_columns(section) if c not in result.columns]
            if missing:
                raise QueryError(
                    f"{where} has no column {', '.join(map(repr, missing))}; its query returns "
                    f"{', '.join(result.columns) or 'no columns'}."
                )
            results.append({"kind": section.kind, "title": section.title,
                            "columns": result.columns, "rows": result.rows, "total": result.total})
    return results


def query_stage(run_id: int) -> bool:
    """Claim the run and query the tenant's data; True when the render stage should follow."""
    lease = _lease()
    if not claim_run(run_id, utcnow(), lease):
        log.info("run %s is not claimable (finished, or another worker holds it)", run_id)
        return False
    try:
        return _query_claimed(run_id, lease)
    except Exception as exc:
        # Unexpected (tenant DB unreachable, a bug): hand the run back and let Dramatiq
        # retry; `max_run_attempts` bounds how often.
        release_run(run_id, utcnow(), redact(f"{type(exc).__name__}: {exc}"))
        raise


def _query_claimed(run_id: int, lease: timedelta) -> bool:
    with holding_lease(run_id, lease):
        with session_scope() as session:
            schedule, report, tenant = _load(session, run_id)
            definition = report.parsed()
            params = {**definition.params, **schedule.params}
            datasource = tenant.datasource_url
        if not datasource:
            finish_run(run_id, RunStatus.FAILED, utcnow(),
                       f"Tenant {tenant.slug!r} has no data source; set one with --datasource.")
            return False
        try:
            sections = query_sections(datasource, definition, params)
        except QueryError as exc:
            finish_run(run_id, RunStatus.FAILED, utcnow(), str(exc))
            return False
        with session_scope() as session:
            content = json.dumps({"params": params, "sections": sections}).encode()
            store_artifact(session, run_id=run_id, kind=QUERY_RESULT, filename=f"run-{run_id}.json",
                           media_type="application/json", content=content, now=utcnow())
    return True


def _still_running(run_id: int) -> bool:
    with session_scope() as session:
        return session.get(ReportRun, run_id).status == RunStatus.RUNNING


def render_stage(run_id: int) -> bool:
    """Render the run's documents (PDF, CSV: issue 4). True when delivery should follow."""
    if not _still_running(run_id):
        return False
    return True


def deliver_stage(run_id: int) -> None:
    """Send to every recipient (issue 5) and record the run's end state."""
    if not _still_running(run_id):
        return
    # Until the channels exist a run that reaches delivery fails loudly, never "succeeds".
    finish_run(run_id, RunStatus.FAILED, utcnow(), "delivery channels are not built yet")


def run_pipeline(run_id: int) -> None:
    """The whole pipeline for one run, synchronously in this process (`herald run`)."""
    if query_stage(run_id) and render_stage(run_id):
        deliver_stage(run_id)
