"""Charts printed by Chromium: every label is text a reader can extract, and no two overlap.

vl-convert lays a chart out by measuring its text; the PDF prints that text in DejaVu Sans.
When the two fonts differed, the y axis title was drawn over the tick labels.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from models.definition import parse_definition
from models.errors import InvalidInput
from tests.renderers.pdf_layout import overlapping, pdf_words, print_report, words_below

PLATFORMS = [["tiktok", 35_000_000], ["youtube", 12_500_000], ["instagram", 8_200_000], ["vk", 900_000]]
DAYS = [[f"2026-01-{day:02d}", 40_000 + day * 1_500] for day in range(1, 32)]
BY_CAMPAIGN = [[platform, views, campaign] for platform, views, campaign in (
    ("tiktok", 1_200, "Campaign A"), ("tiktok", 2_100, "Campaign B"), ("youtube", 800, "Campaign A"),
    ("youtube", 450, "Campaign B"), ("vk", 300, "Campaign A"))]

CHARTS = {
    # id: (chart, columns, rows, words the reader must find in the chart)
    "bar-compact-axis": ({"mark": "bar", "x": "platform", "y": "views"}, ["platform", "views"], PLATFORMS,
                         ["platform", "views", "tiktok", "youtube", "instagram", "vk",
                          "0", "10M", "20M", "30M", "40M"]),
    "line-over-time": ({"mark": "line", "x": "day", "y": "views"}, ["day", "views"], DAYS,
                       ["day", "views", "Jan", "0", "20,000", "40,000", "60,000", "80,000", "100,000"]),
    "stacked-bar-by-color": ({"mark": "bar", "x": "platform", "y": "views", "color": "campaign"},
                             ["platform", "views", "campaign"], BY_CAMPAIGN,
                             ["platform", "views", "campaign", "tiktok", "youtube", "vk", "Campaign", "A", "B",
                              "0", "1,000", "2,000", "3,000", "4,000"]),
    "grouped-bar": ({"mark": "bar", "x": "platform", "y": "views", "color": "campaign", "stack": False},
                    ["platform", "views", "campaign"], BY_CAMPAIGN,
                    ["platform", "views", "campaign", "tiktok", "youtube", "vk", "0", "500", "1,000", "2,000",
                     "2,500"]),
    "area-over-time": ({"mark": "area", "x": "day", "y": "views"}, ["day", "views"], DAYS,
                       ["day", "views", "Jan", "100,000"]),
    "long-names-and-fractions": ({"mark": "bar", "x": "campaign", "y": "engagement"}, ["campaign", "engagement"],
                                 [["Spring launch (all regions)", 0.42], ["Summer sale: video only", 1.35],
                                  ["Back to school, second wave", 0.8]],
                                 ["campaign", "engagement", "Spring", "Summer", "school,", "0", "0.5", "1",
                                  "1.5"]),
    "pie": ({"mark": "pie", "x": "platform", "y": "views"}, ["platform", "views"], PLATFORMS,
            ["platform", "tiktok:", "35,000,000", "youtube:", "12,500,000", "instagram:", "8,200,000",
             "vk:", "900,000"]),
}


@pytest.mark.parametrize("case", list(CHARTS), ids=list(CHARTS))
def test_every_label_is_text_and_no_two_overlap(case: str, printer, tmp_path: Path) -> None:
    # Given a report whose only section is the chart
    chart, columns, rows, expected = CHARTS[case]
    definition = parse_definition({"slug": "chart", "title": "Chart check", "sections": [
        {"kind": "chart", "title": "Views chart", "sql": "SELECT 1", "chart": chart}]})
    results = [{"kind": "chart", "title": "Views chart", "columns": columns, "rows": rows, "total": len(rows)}]

    # When Chromium prints it
    words = words_below(pdf_words(print_report(printer, definition, results), tmp_path), "Views chart")

    # Then every axis title, tick, category and legend entry is extractable text
    texts = [w.text for w in words]
    missing = [word for word in expected if word not in texts]
    assert not missing, f"not in the PDF's text: {missing}; found {texts}"
    # and no two words of the chart share any ink area
    assert not overlapping(words), overlapping(words)


def test_the_axis_numbers_are_compact_and_the_charts_stay_vectors(printer, tmp_path: Path) -> None:
    from tests.renderers.conftest import pdf_images

    chart, columns, rows, _ = CHARTS["bar-compact-axis"]
    definition = parse_definition({"slug": "chart", "title": "Chart check", "sections": [
        {"kind": "chart", "title": "Views chart", "sql": "SELECT 1", "chart": chart}]})
    pdf = print_report(printer, definition, [{"columns": columns, "rows": rows, "total": len(rows)}])
    texts = [w.text for w in pdf_words(pdf, tmp_path)]
    assert "30M" in texts and "30,000,000" not in texts
    assert pdf_images(pdf, tmp_path) == []  # drawn as paths and text, no bitmap
    # the chart's text prints in the font vl-convert measured it with, and no other
    (tmp_path / "fonts.pdf").write_bytes(pdf)
    fonts = subprocess.run(["pdffonts", str(tmp_path / "fonts.pdf")], check=True, capture_output=True,
                           text=True).stdout.splitlines()[2:]
    assert {line.split()[0].split("+")[-1] for line in fonts} <= {"DejaVuSans", "DejaVuSans-Bold"}


@pytest.mark.parametrize(("chart", "message"), [
    ({"mark": "pie", "x": "platform", "y": "views", "color": "campaign"},
     'report: section 1 ("Views").chart color is not used by a pie: x names its slices; remove color.'),
    ({"mark": "donut", "x": "platform", "y": "views"},
     """report: section 1 ("Views").chart.mark Input should be 'bar', 'line', 'area', 'point', """
     """'pie' or 'arc'."""),
])
def test_a_chart_the_renderer_cannot_draw_is_refused_in_one_sentence(chart: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_definition({"slug": "chart", "title": "Chart", "sections": [
            {"kind": "chart", "title": "Views", "sql": "SELECT 1", "chart": chart}]})
    assert str(refused.value) == message
