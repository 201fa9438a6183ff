"""Tables keep aware timestamps on both backends and enforce the outbox's unique keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from models.reports import Report
from models.runs import Delivery, ReportRun
from models.schedules import Schedule
from models.tenancy import Tenant


def _schedule(session: Session) -> Schedule:
    tenant = Tenant(slug="acme", name="Acme")
    session.add(tenant)
    session.flush()
    report = Report(tenant_id=tenant.id, slug="r", title="R", definition={})
    session.add(report)
    session.flush()
    schedule = Schedule(tenant_id=tenant.id, report_id=report.id, cron="0 9 * * *",
                        timezone="Europe/Moscow")
    session.add(schedule)
    session.commit()
    return schedule


def test_timestamps_come_back_aware_and_equal_in_utc(session: Session) -> None:
    schedule = _schedule(session)
    moscow_nine = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=3)))
    schedule.next_run_at = moscow_nine
    session.commit()
    session.expire_all()

    stored = session.get(Schedule, schedule.id).next_run_at
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def test_naive_datetimes_are_refused(session: Session) -> None:
    schedule = _schedule(session)
    schedule.next_run_at = datetime(2026, 3, 1, 9, 0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        session.commit()


def test_one_run_per_schedule_slot(session: Session) -> None:
    schedule = _schedule(session)
    slot = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    session.add(ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, scheduled_for=slot))
    session.commit()
    session.add(ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, scheduled_for=slot))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_one_delivery_per_run_channel_recipient(session: Session) -> None:
    schedule = _schedule(session)
    run = ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id,
                    scheduled_for=datetime(2026, 3, 1, tzinfo=UTC))
    session.add(run)
    session.flush()
    session.add(Delivery(run_id=run.id, channel="email", recipient="a@example.com"))
    session.commit()
    session.add(Delivery(run_id=run.id, channel="email", recipient="a@example.com"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
