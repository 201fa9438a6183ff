"""A run's message: subject, summary and documents, built from what the run stored.

The same for every recipient and every retry; each channel then fits the
documents into its own size limit. Documents are spooled to files, never held
whole in memory; text bound for mail headers or a line of the message is made one
line (see `header_text`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from delivery import Attachment, Letter, document_path
from delivery.fit import Zipper, fit
from models.artifacts import QUERY_RESULT, copy_content, local_copy, read_content
from models.base import Channel, Format
from models.db import utcnow
from models.periods import from_params
from models.reports import Report
from models.runs import Artifact, Delivery, ReportRun
from models.schedules import Schedule
from models.settings import Settings
from models.tenancy import Tenant
from models.text import one_line
from models.unsubscribe import unsubscribe_tokens
from pipeline.carried import Carried
from renderers.csv_export import ZIP_MEDIA_TYPE
from renderers.html import format_kpi, kpi_summary


def header_text(text: str) -> str:
    """`text` on one line, so text stored before validation existed can never add a header."""
    return one_line(text)


def render_subject(template: str | None, title: str, period: str, tenant: str,
                   reporting: str | None = None) -> str:
    """The schedule's subject with {title}, {date}, {tenant} and {period} filled in; a default
    without one. {period} is the reporting period ("23 Nov 2026"), else the slot's date."""
    if not template:
        return header_text(f"{title} — {period}")
    filled = (template.replace("{title}", title).replace("{date}", period).replace("{tenant}", tenant)
              .replace("{period}", reporting or period))
    return header_text(filled)


def spool_document(session: Session, artifact: Artifact, fmt: Format, directory: Path) -> Attachment:
    """The artifact copied chunk by chunk into a file under `directory` (its name goes in a
    Content-Disposition header, so it is made one line too); bytes another run's render made
    are linked from this process's local copy of them."""
    if artifact.content_id is not None:
        with contextlib.suppress(FileNotFoundError):  # the copy went meanwhile: read it again
            return linked_document(artifact, fmt, local_copy(session, artifact), directory)
    path = document_path(directory, header_text(artifact.filename))
    with path.open("wb") as target:
        copy_content(session, artifact, target)
    return Attachment(format=fmt, filename=path.name, media_type=artifact.media_type, path=path,
                      rows=artifact.rows)


def linked_document(artifact: Artifact, fmt: Format, file: Path, directory: Path) -> Attachment:
    """A file with the artifact's bytes (made by the render stage of this thread, or a local
    copy), linked into `directory` under its name as `spool_document` would have written it."""
    path = document_path(directory, header_text(artifact.filename))
    try:
        os.link(file, path)
    except OSError as exc:  # another file system
        if isinstance(exc, FileNotFoundError):
            raise
        shutil.copyfile(file, path)
    return Attachment(format=fmt, filename=path.name, media_type=artifact.media_type, path=path,
                      rows=artifact.rows)


def stored_result(session: Session, stored: Artifact | None) -> dict:
    """A run's query result as the query stage stored it ({} if it stored none)."""
    if stored is None:
        return {}
    if stored.content_id is not None:
        with contextlib.suppress(FileNotFoundError):
            return json.loads(local_copy(session, stored).read_bytes())
    return json.loads(read_content(session, stored))


def build_letter(session: Session, run: ReportRun, directory: Path, carried: Carried | None = None) -> Letter:
    """The run's message, from its stored documents (spooled into `directory`, which must
    outlive the letter): the same for every recipient and retry. With `carried`, from what
    the earlier stages of this thread read and made, the same, without reading it back."""
    if carried is not None and carried.rows is not None:
        _, schedule, report, tenant = carried.rows
    else:
        schedule = session.get(Schedule, run.schedule_id)
        report = session.get(Report, schedule.report_id)
        tenant = session.get(Tenant, run.tenant_id)
    definition = report.parsed()
    title, tenant_name = header_text(definition.title), header_text(tenant.name)
    zone = ZoneInfo(schedule.timezone)
    attachments, generated = [], run.started_at or utcnow()
    made = carried.documents if carried is not None else {}
    content = carried.stored if carried is not None else None
    shared = carried.shared if carried is not None else None
    if content is not None and all(f in made for f in schedule.formats):
        kept = {}
    elif shared is not None:  # given by the render this run reused, in this thread
        kept = shared
    else:
        kept = {a.kind: a for a in session.exec(select(Artifact).where(Artifact.run_id == run.id))}
    for fmt in map(Format, schedule.formats):
        if fmt.value in made:
            artifact, file = made[fmt.value]
            attachments.append(linked_document(artifact, fmt, file, directory))
        else:
            artifact = kept[fmt.value]
            attachments.append(spool_document(session, artifact, fmt, directory))
        generated = artifact.created_at
    if content is None:
        content = stored_result(session, kept.get(QUERY_RESULT))
    results = content.get("sections", [])
    reporting = from_params(content.get("params", {}), zone)
    summary = [("Period", reporting.label)] if reporting and definition.uses_period() else []
    summary += kpi_summary(definition, results)
    summary += [("CSV rows", format_kpi(a.rows, definition.locale))
                for a in attachments if a.format == Format.CSV]
    # one line per item in the plain-text part, whatever a stored title holds
    summary = [(header_text(label), header_text(value)) for label, value in summary]
    period = run.scheduled_for.astimezone(zone).date().isoformat()
    subject = render_subject(schedule.subject, title, period, tenant_name,
                             reporting.label if reporting else None)
    return Letter(run_id=run.id, subject=subject,
                  title=title, tenant=tenant_name, period=period,
                  generated_at=generated.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                  summary=tuple(summary), attachments=tuple(attachments), locale=definition.locale)


def with_unsubscribe(session: Session, letter: Letter, run: ReportRun, public_url: str,
                     addresses: list[str] | None = None) -> Letter:
    """The letter with a one-click unsubscribe URL for each e-mail recipient of the run (a test
    run's recipients are not subscribed: none for them); `addresses`: the caller knows them."""
    if run.test:
        return letter
    if addresses is None:
        addresses = list(session.exec(select(Delivery.recipient).where(
            Delivery.run_id == run.id, Delivery.channel == Channel.EMAIL)))
    tokens = unsubscribe_tokens(session, run.schedule_id, addresses)
    return replace(letter, unsubscribe={a: f"{public_url}/unsubscribe/{t}" for a, t in tokens.items()})


def fitted_letter(letter: Letter, channel: Channel, settings: Settings, zipper: Zipper) -> Letter:
    """The letter with the channel's documents: zipped where they had to be, and saying so."""
    attachments = fit(channel, letter.attachments, settings, zipper)
    notes = []
    for fitted, original in zip(attachments, letter.attachments, strict=True):
        if original.media_type != ZIP_MEDIA_TYPE and fitted.media_type == ZIP_MEDIA_TYPE:
            notes.append(f"{fitted.filename} is zipped to fit the size limit.")
        elif fitted.media_type == ZIP_MEDIA_TYPE and fitted.rows is not None:
            notes.append(f"{fitted.filename} is zipped ({format_kpi(fitted.rows, letter.locale)} rows).")
    return replace(letter, attachments=attachments, notes=tuple(notes))
