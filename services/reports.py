"""Reports: a tenant's report definitions, listed, read as YAML and saved (created or updated
by slug, from a file or text) with each query checked against the tenant's data source first.

Each function takes who is asking and checks their tenant and role first (reading: viewer;
saving: editor), and returns plain data; a save is recorded in the change audit. Previews,
downloads and exports are `services.documents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from sqlmodel import Session, select

from models.audit import Change, diff, list_changes, record_change
from models.db import utcnow
from models.definition import ReportDefinition, parse_definition_text
from models.errors import InvalidInput, NotFound
from models.reports import Report
from models.tenancy import Tenant
from pipeline.query import export_params
from services.access import Action, Who, owned, require
from tenantdb import check_report

# The order a person reads a report in; keys not named here follow in stored order.
KEY_ORDER = {
    "report": ("slug", "title", "params", "sections", "csv"),
    "section": ("kind", "title", "sql", "column", "max_rows", "chart"),
    "chart": ("mark", "x", "y", "color"),
    "csv": ("sql", "filename"),
}


@dataclass(frozen=True)
class ReportSummary:
    """One row of the reports list."""

    id: int
    slug: str
    title: str
    sections: int
    formats: tuple[str, ...]  # "pdf" when it has sections, "csv" and "xlsx" when it has a csv query
    updated_at: datetime      # last saved (created, if never updated)


@dataclass(frozen=True)
class SavedReport:
    """What a save did: the report's id, slug and title, and whether it was created."""

    id: int
    slug: str
    title: str
    created: bool


def list_reports(session: Session, who: Who, tenant_id: int) -> list[ReportSummary]:
    """The tenant's reports by slug, with what each can make."""
    require(who, tenant_id, Action.READ)
    reports = session.exec(select(Report).where(Report.tenant_id == tenant_id).order_by(Report.slug))
    return [_summary(report) for report in reports]


def _summary(report: Report) -> ReportSummary:
    sections = len(report.definition.get("sections") or [])
    formats = (("pdf",) if sections else ()) + (("csv", "xlsx") if report.definition.get("csv") else ())
    return ReportSummary(id=report.id, slug=report.slug, title=report.title, sections=sections,
                         formats=formats, updated_at=report.updated_at or report.created_at)


def report_yaml(session: Session, who: Who, report_id: int) -> str:
    """The stored definition as YAML, keys in reading order: what the edit form starts from."""
    report = owned(session, who, Report, report_id, "report")
    return definition_yaml(report.definition)


def definition_yaml(definition: dict[str, Any]) -> str:
    """A stored definition as YAML text that parses back to the same definition."""
    data = _ordered(definition, "report")
    if isinstance(data.get("sections"), list):
        data["sections"] = [_section(s) if isinstance(s, dict) else s for s in data["sections"]]
    if isinstance(data.get("csv"), dict):
        data["csv"] = _ordered(data["csv"], "csv")
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _section(section: dict[str, Any]) -> dict[str, Any]:
    ordered = _ordered(section, "section")
    if isinstance(ordered.get("chart"), dict):
        ordered["chart"] = _ordered(ordered["chart"], "chart")
    return ordered


def _ordered(data: dict[str, Any], kind: str) -> dict[str, Any]:
    first = [k for k in KEY_ORDER[kind] if k in data]
    return {k: data[k] for k in first + [k for k in data if k not in first]}


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key; multi-line text (SQL) as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def save_report_text(session: Session, who: Who, tenant_id: int, text: str,
                     source: str = "report.yaml", report_id: int | None = None) -> SavedReport:
    """Validate YAML text and save it as the tenant's report with its slug (create or update).

    Errors name `source` and the field as `herald report add` does; the text is read within a
    report file's bounds (`models.report_file`: size, nesting, aliases) like the CLI's and the
    API's, each query is checked against the tenant's data source first, and nothing is
    written on error. With
    `report_id` (an edit), the text must keep that report's slug.
    """
    require(who, tenant_id, Action.EDIT)
    if report_id is not None:
        editing = owned(session, who, Report, report_id, "report", Action.EDIT)
        if editing.tenant_id != tenant_id:
            raise InvalidInput(f"Report {report_id} belongs to another of your tenants; "
                               f"choose its tenant to edit it.")
    definition = parse_definition_text(text, source)
    if report_id is not None and definition.slug != editing.slug:
        raise InvalidInput(f"{source}: slug must stay {editing.slug!r} when editing that report; "
                           f"upload the text as a new report to use slug {definition.slug!r}.")
    report, created = save_report(session, who, session.get(Tenant, tenant_id), definition, source)
    return SavedReport(id=report.id, slug=report.slug, title=report.title, created=created)




def get_report(session: Session, who: Who, tenant: Tenant, slug: str) -> Report:
    """The tenant's report with this slug."""
    require(who, tenant.id, Action.READ)
    report = session.exec(
        select(Report).where(Report.tenant_id == tenant.id, Report.slug == slug)
    ).first()
    if report is None:
        raise NotFound(
            f"Tenant {tenant.slug!r} has no report {slug!r}; add it with "
            f"`herald report add --tenant {tenant.slug} FILE.yaml`."
        )
    return report


def save_report(session: Session, who: Who, tenant: Tenant, definition: ReportDefinition,
                source: str | None = None) -> tuple[Report, bool]:
    """Create the report, or update the one with the same slug. Returns (report, created).

    When the tenant has a data source, it first describes each query bound as a run of the
    latest period binds it (no rows are read), so SQL that is not one SELECT, or lacks a
    column its section shows, is refused here; errors name `source` (the file) when given.
    The change (title and definition, old → new) is recorded as who made it.
    """
    require(who, tenant.id, Action.EDIT)
    named = f"{source}: " if source else ""
    if definition.refresh and not tenant.refresh_url:
        raise InvalidInput(f"{named}The report refreshes {', '.join(definition.refresh)} before its "
                           f"queries, and tenant {tenant.slug!r} granted no refresh data source; grant "
                           f"one with `herald tenant grant-refresh {tenant.slug} --url <the views' "
                           f"owner's PostgreSQL URL>`, or remove refresh:.")
    if tenant.datasource_url:
        try:
            check_report(tenant.datasource_url, definition,
                         export_params(definition, tenant.timezone, utcnow()))
        except InvalidInput as exc:
            raise InvalidInput(f"{named}{exc}") from None
    data = definition.model_dump(mode="json", exclude_none=True)
    for key, default in (("send_if", "always"), ("refresh", [])):  # unused options stay unwritten
        if data.get(key) == default:
            del data[key]
    report = session.exec(
        select(Report).where(Report.tenant_id == tenant.id, Report.slug == definition.slug)
    ).first()
    created = report is None
    before = {} if report is None else {"title": report.title, "definition": report.definition}
    changes = diff(before, {"title": definition.title, "definition": data})
    if report is None:
        report = Report(tenant_id=tenant.id, slug=definition.slug, title=definition.title,
                        definition=data)
        session.add(report)
    else:
        report.title, report.definition, report.updated_at = definition.title, data, utcnow()
    session.flush()
    if changes:
        record_change(session, tenant.id, "report", report.id, "created" if created else "updated",
                      who.actor, changes)
    return report, created


def report_changes(session: Session, who: Who, report_id: int, limit: int = 50) -> list[Change]:
    """Who changed the report, and when, newest first (the definition's text is not repeated)."""
    report = owned(session, who, Report, report_id, "report")
    return [c._replace(changes={k: v for k, v in c.changes.items() if k != "definition"})
            for c in list_changes(session, report.tenant_id, "report", report.id, limit)]


def report_detail(session: Session, who: Who, tenant_id: int, slug: str) -> dict[str, Any]:
    """One report of the tenant as JSON-ready data: its summary, definition and YAML."""
    require(who, tenant_id, Action.READ)
    report = get_report(session, who, session.get(Tenant, tenant_id), slug)
    summary = _summary(report)
    return {"id": report.id, "slug": report.slug, "title": report.title,
            "sections": summary.sections, "formats": list(summary.formats),
            "updated_at": summary.updated_at.isoformat(), "definition": report.definition,
            "yaml": definition_yaml(report.definition)}


def refresh_report_views(session: Session, who: Who, tenant_id: int, slug: str) -> list[str]:
    """Refresh the report's materialized views now, through the tenant's refresh grant (as a run
    does before its queries); recorded among the report's changes. Returns the views."""
    from models.settings import get_settings
    from tenantdb.refresh import refresh_views

    require(who, tenant_id, Action.EDIT)
    tenant = session.get(Tenant, tenant_id)
    report = get_report(session, who, tenant, slug)
    views = list(report.parsed().refresh)
    if not views:
        raise InvalidInput(f"Report {slug!r} refreshes no views; list them under refresh: in its "
                           f"YAML first.")
    if not tenant.refresh_url:
        raise InvalidInput(f"Tenant {tenant.slug!r} granted no refresh data source; grant one with "
                           f"`herald tenant grant-refresh {tenant.slug} --url …`.")
    refresh_views(tenant.refresh_url, views, get_settings().refresh_timeout_seconds)
    record_change(session, tenant_id, "report", report.id, "views refreshed", who.actor,
                  {"views": [None, views]})
    return views
