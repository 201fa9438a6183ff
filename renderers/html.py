"""The report as print-ready HTML (Jinja2, autoescaped): every value is text, never markup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from models.definition import ChartSection, ReportDefinition
from renderers.charts import chart_spec, chart_svg

_env = Environment(loader=PackageLoader("renderers", "templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def format_kpi(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    if isinstance(value, float):
        return f"{value:,.2f}".replace(",", "\u202f")
    return str(value)


def kpi_value(section: Any, result: dict[str, Any]) -> Any:
    """A KPI section's value: its column in the first row, None when the query returned none."""
    return result["rows"][0][result["columns"].index(section.column)] if result["rows"] else None


def kpi_summary(definition: ReportDefinition, results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, formatted value) for each KPI section, as the PDF shows them."""
    return [(section.title, format_kpi(kpi_value(section, result)))
            for section, result in zip(definition.sections, results, strict=False) if section.kind == "kpi"]


def section_groups(definition: ReportDefinition, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive KPIs become one row of tiles; charts become SVG; tables stay rows."""
    groups: list[dict[str, Any]] = []
    for section, result in zip(definition.sections, results, strict=True):
        if section.kind == "kpi":
            if not groups or groups[-1]["kind"] != "kpi":
                groups.append({"kind": "kpi", "tiles": []})
            groups[-1]["tiles"].append({"title": section.title, "value": format_kpi(kpi_value(section, result))})
        elif isinstance(section, ChartSection):
            spec = chart_spec(section.chart, result["columns"], result["rows"])
            # vl-convert writes XML-escaped SVG text; it is the only markup let through.
            groups.append({"kind": "chart", "title": section.title, "svg": Markup(chart_svg(spec))})
        else:
            groups.append({"kind": "table", "title": section.title, "columns": result["columns"],
                           "rows": result["rows"], "total": result["total"]})
    return groups


def render_html(definition: ReportDefinition, results: list[dict[str, Any]], *, tenant: str,
                params: dict[str, Any], generated_at: datetime) -> str:
    return _env.get_template("report.html.j2").render(
        title=definition.title, tenant=tenant, params=params,
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M %Z (UTC%z)"),
        groups=section_groups(definition, results),
    )
