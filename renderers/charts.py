"""Charts as vector SVG from Vega-Lite specs (vl-convert renders them).

vl-convert measures every label with the font the PDF prints with (DejaVu Sans), so the
layout it computes (axis titles beside tick labels, legends below) holds on paper. Numbers
on axes and in legends are Babel's strings for the report's locale, as in KPIs and tables.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from datetime import tzinfo
from pathlib import Path
from typing import Any

import vl_convert

from models.definition import ChartSpec
from renderers.numbers import (
    axis_labels,
    format_value,
    is_number,
    is_temporal_text,
    nice_ticks,
    vega_time_locale,
    wall_clock_ms,
)

WIDTH, HEIGHT = 620, 260
FONT = "DejaVu Sans"  # the report's CSS prints chart text in this font too
FONT_DIRECTORIES = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")


@functools.cache
def _register_fonts() -> None:
    """Let vl-convert measure text with the printed font wherever the system keeps it."""
    for directory in FONT_DIRECTORIES:
        if Path(directory, "DejaVuSans.ttf").is_file():
            vl_convert.register_font_directory(directory)
            return


def chart_spec(chart: ChartSpec, columns: list[str], rows: list[list[Any]], locale: str = "en",
               zone: tzinfo | None = None) -> dict:
    """A Vega-Lite spec for the section's rows; times in `zone` (the tenant's), numbers in `locale`."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    config = {"font": FONT, "locale": {"time": vega_time_locale(locale)},
              "legend": {"orient": "bottom", "labelLimit": 260}, "view": {"stroke": None}}
    # The section's heading is the title; the chart itself carries none.
    spec: dict[str, Any] = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
                            "width": WIDTH, "height": HEIGHT, "config": config}
    if chart.mark in ("pie", "arc"):
        return spec | _pie(chart, records, locale)
    x_type = _x_type(chart, records)
    time_axis = None
    if x_type == "temporal":
        records = [r | {chart.x: wall_clock_ms(r[chart.x], zone)} if r.get(chart.x) else r for r in records]
        time_axis = _time_axis([r[chart.x] for r in records if r.get(chart.x) is not None])
    stacked = bool(chart.color) and chart.stack and chart.mark in ("bar", "area")
    ticks = nice_ticks(*_y_extent(chart, records, stacked))
    encoding: dict[str, Any] = {
        "x": _x_encoding(chart, x_type, len(records), time_axis),
        "y": {"field": chart.y, "type": "quantitative", "title": chart.y,
              "stack": "zero" if stacked else None,
              "scale": {"domain": [ticks[0], ticks[-1]], "nice": False},
              "axis": {"values": ticks, "labelExpr": _lookup(ticks, axis_labels(ticks, locale))}},
    }
    if chart.color:
        encoding["color"] = {"field": chart.color, "type": "nominal", "title": chart.color, "sort": None}
        if chart.mark == "bar" and not chart.stack:
            encoding["xOffset"] = {"field": chart.color, "sort": None}
    mark: dict[str, Any] = {"type": chart.mark}
    if chart.mark == "line":
        mark["point"] = True
    if chart.mark == "area" and chart.color and not chart.stack:
        mark["opacity"] = 0.5
    return spec | {"data": {"values": records}, "mark": mark, "encoding": encoding}


def _x_type(chart: ChartSpec, records: list[dict[str, Any]]) -> str:
    values = [r.get(chart.x) for r in records if r.get(chart.x) is not None]
    if chart.mark in ("line", "area", "point") and values and all(is_temporal_text(v) for v in values):
        return "temporal"
    if chart.mark in ("line", "area", "point") and all(is_number(v) for v in values):
        return "quantitative"
    return "ordinal" if chart.mark in ("line", "area") else "nominal"


def _time_axis(moments: list[float]) -> dict[str, Any]:
    """Ticks and labels for a time axis by its span: 5 Jan, Jan 2026 or 2026 for dates, hours
    for times; whole days, months or years between the ticks of dates, so no label repeats."""
    day = 86_400_000
    span = (max(moments) - min(moments)) / day
    if any(m % day for m in moments):
        return {"format": "%H:%M" if span <= 2 else "%-d %b %H:%M", "labelOverlap": True}
    if span <= 120:
        unit, fmt, count = "day", "%-d %b", span
    elif span <= 3 * 366:
        unit, fmt, count = "month", "%b %Y", span / 30.4
    else:
        unit, fmt, count = "year", "%Y", span / 365.25
    step = max(1, math.ceil(count / 8))
    return {"format": fmt, "tickCount": {"interval": unit, "step": step}, "labelOverlap": True}


def _x_encoding(chart: ChartSpec, x_type: str, count: int, time_axis: dict | None) -> dict[str, Any]:
    encoding: dict[str, Any] = {"field": chart.x, "type": x_type, "title": chart.x}
    if time_axis is not None:
        encoding["scale"] = {"type": "utc"}
        encoding["axis"] = time_axis
    elif x_type in ("nominal", "ordinal"):
        encoding["sort"] = None
        encoding["axis"] = {"labelAngle": 0, "labelLimit": 120} if count <= 8 else {"labelOverlap": True}
    return encoding


def _y_extent(chart: ChartSpec, records: list[dict[str, Any]], stacked: bool) -> tuple[float, float]:
    """The lowest and highest value the y axis must reach: per-x sums when series stack."""
    values = [r[chart.y] for r in records if is_number(r.get(chart.y))]
    if not stacked:
        return (min(values, default=0), max(values, default=0))
    above: dict[Any, float] = defaultdict(float)
    below: dict[Any, float] = defaultdict(float)
    for record in records:
        value = record.get(chart.y)
        if is_number(value):
            (above if value > 0 else below)[record.get(chart.x)] += value
    return (min(below.values(), default=0), max(above.values(), default=0))


def _pie(chart: ChartSpec, records: list[dict[str, Any]], locale: str) -> dict[str, Any]:
    """Slices named by `x`, sized by `y`; the legend gives each name with its number."""
    names = [str(r.get(chart.x)) for r in records]
    labels = [f"{name}: {format_value(r.get(chart.y), locale)}" for name, r in zip(names, records, strict=True)]
    return {"width": HEIGHT, "data": {"values": records}, "mark": {"type": "arc"},
            "encoding": {"theta": {"field": chart.y, "type": "quantitative", "stack": True},
                         "color": {"field": chart.x, "type": "nominal", "sort": None, "title": chart.x,
                                   "legend": {"labelExpr": _lookup(names, labels), "orient": "right"}}}}


def _lookup(keys: list[Any], labels: list[str]) -> str:
    """A Vega expression giving `labels[i]` where `datum.value` is `keys[i]` (else the value)."""
    return (f"indexof({json.dumps(keys)}, datum.value) < 0 ? datum.label : "
            f"{json.dumps(labels, ensure_ascii=False)}[indexof({json.dumps(keys)}, datum.value)]")


def chart_svg(spec: dict) -> str:
    """The spec drawn as SVG: text stays text, so labels are selectable in the PDF. A drawing
    is a function of its spec (data included), and costs 20-30 ms of CPU: the last ones drawn
    are kept, for the many documents of one report that show the same chart."""
    return _drawn(json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str))


@functools.lru_cache(maxsize=128)
def _drawn(spec: str) -> str:
    _register_fonts()
    return vl_convert.vegalite_to_svg(json.loads(spec))
