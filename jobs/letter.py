"""A run's message: subject, summary and documents, built from what the run stored.

The same for every recipient and every retry; each channel then fits the
documents into its own size limit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from zoneinfo import ZoneInfo

from sqlmodel import Session

from delivery import Attachment, Letter
from delivery.fit import Zipper, fit
from models.artifacts import QUERY_RESULT, read_content, run_artifact
from models.base import Channel, Format
from models.db import utcnow
from models.reports import Report
from models.runs import ReportRun
from models.schedules import Schedule
from models.settings import Settings
from models.tenancy import Tenant
from renderers.csv_export import ZIP_MEDIA_TYPE
from renderers.html import format_kpi, kpi_summary


def render_subject(template: str | None, title: str, period: str, tenant: str) -> str:
    """The schedule's subject with {title}, {date} and {tenant} filled in; a default without one."""
    if not template:
        return f"{title} — {period}"
    return template.replace("{title}", title).replace("{date}", period).replace("{tenant}", tenant)


def build_letter(session: Session, run: ReportRun) -> Letter:
    """The run's message, from its stored documents: the same for every recipient and retry."""
    schedule = session.get(Schedule, run.schedule_id)
    report = session.get(Report, schedule.report_id)
    tenant = session.get(Tenant, run.tenant_id)
    definition = report.parsed()
    zone = ZoneInfo(schedule.timezone)
    attachments, generated = [], run.started_at or utcnow()
    for fmt in map(Format, schedule.formats):
        artifact = run_artifact(session, run.id, fmt.value)
        attachments.append(Attachment(format=fmt, filename=artifact.filename, media_type=artifact.media_type,
                                      content=read_content(session, artifact.id), rows=artifact.rows))
        generated = artifact.created_at
    stored = run_artifact(session, run.id, QUERY_RESULT)
    results = json.loads(read_content(session, stored.id))["sections"] if stored else []
    summary = kpi_summary(definition, results)
    summary += [("CSV rows", format_kpi(a.rows)) for a in attachments if a.format == Format.CSV]
    period = run.scheduled_for.astimezone(zone).date().isoformat()
    return Letter(run_id=run.id, subject=render_subject(schedule.subject, definition.title, period, tenant.name),
                  title=definition.title, tenant=tenant.name, period=period,
                  generated_at=generated.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                  summary=tuple(summary), attachments=tuple(attachments))


def fitted_letter(letter: Letter, channel: Channel, settings: Settings, zipper: Zipper) -> Letter:
    """The letter with the channel's documents: zipped where they had to be, and saying so."""
    attachments = fit(channel, letter.attachments, settings, zipper)
    notes = []
    for fitted, original in zip(attachments, letter.attachments, strict=True):
        if original.media_type != ZIP_MEDIA_TYPE and fitted.media_type == ZIP_MEDIA_TYPE:
            notes.append(f"{fitted.filename} is zipped to fit the size limit.")
        elif fitted.media_type == ZIP_MEDIA_TYPE and fitted.rows is not None:
            notes.append(f"{fitted.filename} is zipped ({fitted.rows:,} rows).")
    return replace(letter, attachments=attachments, notes=tuple(notes))
