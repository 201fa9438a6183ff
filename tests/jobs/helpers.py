"""Fast set-up of many schedules for tick tests and benchmarks."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models.db import session_scope, utcnow
from models.reports import Report
from models.runs import ReportRun
from models.schedules import Schedule
from models.tenancy import Tenant
from pipeline.in_process import run_in_process


def make_tenant(url: str, slug: str = "acme", datasource: str | None = None) -> tuple[int, int]:
    """A tenant with one report; returns (tenant id, report id)."""
    with session_scope(url) as session:
        tenant = Tenant(slug=slug, name=slug.title(), datasource_url=datasource)
        session.add(tenant)
        session.flush()
        report = Report(tenant_id=tenant.id, slug="r", title="R", definition={
            "slug": "r", "title": "R", "sections": [
                {"kind": "kpi", "title": "One", "sql": "SELECT 1 AS value"}]})
        session.add(report)
        session.flush()
        return tenant.id, report.id


def add_schedules(url: str, tenant_id: int, report_id: int, count: int, *, cron: str,
                  next_run_at: datetime | None, timezone: str = "UTC", grace_s: int = 3600,
                  active: bool = True) -> list[int]:
    rows = [{"tenant_id": tenant_id, "report_id": report_id, "cron": cron, "timezone": timezone,
             "formats": ["pdf"], "params": {}, "active": active, "next_run_at": next_run_at,
             "misfire_grace_seconds": grace_s, "created_at": utcnow()} for _ in range(count)]
    with session_scope(url) as session:
        result = session.execute(sa.insert(Schedule.__table__).returning(Schedule.__table__.c.id), rows)
        return [r.id for r in result]


def runs_of(url: str) -> list[ReportRun]:
    with session_scope(url) as session:
        return list(session.exec(sa.select(ReportRun).order_by(ReportRun.id)).scalars())


def in_process(runs) -> None:
    """Dispatch as the embedded mode does: the whole pipeline, synchronously."""
    for run_id, _tenant_id in runs:
        run_in_process(run_id)
