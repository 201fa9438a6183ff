"""The report as print-ready HTML (Jinja2, autoescaped): every value is text, never markup."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from models.definition import ChartSection, ReportDefinition
from models.periods import PARAM_NAMES as PERIOD_PARAMS
from models.periods import from_params
from renderers.charts import chart_spec, chart_svg
from renderers.numbers import format_cell, format_number, format_value, is_number

_env = Environment(loader=PackageLoader("renderers", "templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def css_string(text: str) -> Markup:
    """`text` as the inside of a double-quoted CSS string in a <style> element: every character
    but letters, digits and spaces as a CSS escape, so no quote, backslash, newline or
    "</style>" in a title can end the string or the element."""
    return Markup("".join(c if c.isalnum() or c == " " else f"\\{ord(c):x} " for c in text))


_env.filters["css_string"] = css_string


def format_kpi(value: Any, locale: str = "en") -> str:
    """A KPI's value as the PDF and the messages show it (the report's `locale`)."""
    return format_value(value, locale)


def kpi_value(section: Any, result: dict[str, Any]) -> Any:
    """A KPI section's value: its column in the first row, None when the query returned none."""
    return result["rows"][0][result["columns"].index(section.column)] if result["rows"] else None


def kpi_summary(definition: ReportDefinition, results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, formatted value) for each KPI section, as the PDF shows them."""
    return [(section.title, format_kpi(kpi_value(section, result), definition.locale))
            for section, result in zip(definition.sections, results, strict=False) if section.kind == "kpi"]


def section_groups(definition: ReportDefinition, results: list[dict[str, Any]],
                   zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Consecutive KPIs become one row of tiles; charts become SVG; tables become formatted text.

    Every number goes through the report's locale; times in tables and charts are shown in `zone`.
    """
    locale = definition.locale
    groups: list[dict[str, Any]] = []
    for section, result in zip(definition.sections, results, strict=True):
        if section.kind == "kpi":
            if not groups or groups[-1]["kind"] != "kpi":
                groups.append({"kind": "kpi", "tiles": []})
            groups[-1]["tiles"].append({"title": section.title,
                                        "value": format_kpi(kpi_value(section, result), locale)})
        elif isinstance(section, ChartSection):
            spec = chart_spec(section.chart, result["columns"], result["rows"], locale, zone)
            # vl-convert writes XML-escaped SVG text; it is the only markup let through.
            groups.append({"kind": "chart", "title": section.title, "svg": Markup(chart_svg(spec))})
        else:
            groups.append(_table(section.title, result, locale, zone))
    return groups


def _table(title: str, result: dict[str, Any], locale: str, zone: tzinfo | None) -> dict[str, Any]:
    """Cells as text, with numeric columns (every value a number) right-aligned, header included."""
    rows = result["rows"]
    numeric = [any(is_number(row[i]) for row in rows) and all(row[i] is None or is_number(row[i]) for row in rows)
               for i in range(len(result["columns"]))]
    cells = [[{"text": "—" if value is None else format_cell(value, locale, zone), "number": numeric[i],
               "null": value is None} for i, value in enumerate(row)] for row in rows]
    return {"kind": "table", "title": title, "columns": list(zip(result["columns"], numeric, strict=True)),
            "rows": cells, "shown": format_number(len(rows), locale),
            "total": result["total"], "total_text": format_number(result["total"], locale)}


def render_html(definition: ReportDefinition, results: list[dict[str, Any]], *, tenant: str,
                params: dict[str, Any], generated_at: datetime, zone: tzinfo | None = None) -> str:
    """The report's page. Tables and charts show times in `zone` (the tenant's timezone), or
    without one in `generated_at`'s (aware, the schedule's timezone)."""
    period = from_params(params, generated_at.tzinfo) if definition.uses_period() else None
    shown = {name: value for name, value in params.items() if name not in PERIOD_PARAMS}
    return _env.get_template("report.html.j2").render(
        title=definition.title, tenant=tenant, params=shown, lang=definition.locale.replace("_", "-"),
        period=period.label if period else None,
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M %Z (UTC%z)"),
        groups=section_groups(definition, results, zone or generated_at.tzinfo),
    )
