"""Charts as vector SVG from Vega-Lite specs (Altair builds, vl-convert renders).

The admin shows the same spec in the browser, so a chart looks the same in both.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import vl_convert

from models.definition import ChartSpec

WIDTH, HEIGHT = 620, 260


def chart_spec(chart: ChartSpec, columns: list[str], rows: list[list[Any]]) -> dict:
    """A Vega-Lite spec for the section's rows (records keyed by column name)."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    numeric_x = all(isinstance(r.get(chart.x), (int, float)) for r in records if r.get(chart.x) is not None)
    x_type = "quantitative" if numeric_x and chart.mark in ("line", "area", "point") else "nominal"
    if chart.mark in ("line", "area") and not numeric_x:
        x_type = "ordinal"
    encoding: dict[str, Any] = {
        "x": alt.X(chart.x, type=x_type, sort=None, title=chart.x,
                   axis=alt.Axis(labelAngle=0, labelLimit=120) if x_type == "nominal" and len(records) <= 8 else alt.Axis()),
        "y": alt.Y(chart.y, type="quantitative", title=chart.y),
    }
    if chart.color:
        encoding["color"] = alt.Color(chart.color, type="nominal")
    # The section's heading is the title; the chart itself carries none.
    base = alt.Chart(alt.Data(values=records), width=WIDTH, height=HEIGHT)
    marked = {"bar": base.mark_bar(), "line": base.mark_line(point=True),
              "area": base.mark_area(), "point": base.mark_point()}[chart.mark]
    # No font in the spec: naming one costs vl-convert a font lookup per chart;
    # the page's CSS sets the font of the SVG's text.
    return marked.encode(**encoding).to_dict(validate=False)


def chart_svg(spec: dict) -> str:
    """The spec drawn as SVG: text stays text, so labels are selectable in the PDF."""
    return vl_convert.vegalite_to_svg(spec)
