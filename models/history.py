"""Reading run and delivery history: plain data for the CLI and the admin."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from models.runs import Delivery, ReportRun, RunStatus
from models.tenancy import Tenant


def list_runs(session: Session, *, tenant_slug: str | None = None, schedule_id: int | None = None,
              limit: int = 50) -> list[dict[str, Any]]:
    """Newest runs first, each with its deliveries."""
    query = select(ReportRun).order_by(ReportRun.scheduled_for.desc(), ReportRun.id.desc()).limit(limit)
    if tenant_slug is not None:
        query = query.join(Tenant, Tenant.id == ReportRun.tenant_id).where(Tenant.slug == tenant_slug)
    if schedule_id is not None:
        query = query.where(ReportRun.schedule_id == schedule_id)
    runs = list(session.exec(query))
    deliveries: dict[int, list[Delivery]] = {}
    if runs:
        for d in session.exec(select(Delivery).where(Delivery.run_id.in_([r.id for r in runs]))
                              .order_by(Delivery.id)):
            deliveries.setdefault(d.run_id, []).append(d)
    return [run_to_dict(run, deliveries.get(run.id, [])) for run in runs]


def run_to_dict(run: ReportRun, deliveries: list[Delivery]) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": run.id, "schedule_id": run.schedule_id, "tenant_id": run.tenant_id,
        "scheduled_for": iso(run.scheduled_for), "manual": run.manual, "test": run.test,
        "test_recipients": run.test_recipients, "requested_by": run.requested_by, "status": run.status,
        "attempts": run.attempts, "queued_at": iso(run.queued_at), "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        # A skipped run's `error` column holds why it sent nothing: shown as its reason.
        "error": None if run.status == RunStatus.SKIPPED else run.error,
        "reason": run.error if run.status == RunStatus.SKIPPED else None,
        "deliveries": [{"channel": d.channel, "recipient": d.recipient, "status": d.status,
                        "attempts": d.attempts, "error": d.error,
                        "provider_message_id": d.provider_message_id} for d in deliveries],
    }
