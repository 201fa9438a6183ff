"""One number format: the report's locale formats the KPI, the table and the chart's axis alike."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from models.definition import parse_definition
from models.errors import InvalidInput
from renderers.html import render_html
from tests.renderers.pdf_layout import GENERATED_AT, Word, pdf_words, print_report

ROWS = [["Video 1", "tiktok", 400_000, 12.5, "2026-01-01T21:30:00+00:00"],
        ["Video 2", "youtube", 250_000, 1234.25, "2026-01-02T08:05:00Z"],
        ["Video 3", "vk", 75_000, None, "2026-01-03T00:00:00+03:00"]]
COLUMNS = ["title", "platform", "views", "score", "published_at"]


def report(locale: str | None):
    data = {"slug": "numbers", "title": "Numbers", "sections": [
        {"kind": "kpi", "title": "Best video", "sql": "SELECT 1"},
        {"kind": "kpi", "title": "Mean score", "sql": "SELECT 1"},
        {"kind": "chart", "title": "Views by platform", "sql": "SELECT 1",
         "chart": {"mark": "bar", "x": "platform", "y": "views"}},
        {"kind": "table", "title": "Videos", "sql": "SELECT 1"}]}
    if locale:
        data["locale"] = locale
    return parse_definition(data)


RESULTS = [{"columns": ["value"], "rows": [[400_000]], "total": 1},
           {"columns": ["value"], "rows": [[1234.25]], "total": 1},
           {"columns": ["platform", "views"], "rows": [row[1:3] for row in ROWS], "total": 3},
           {"columns": COLUMNS, "rows": ROWS, "total": 3}]


def phrase_at(words: list[Word], text: str) -> list[Word]:
    """The first word of each place where `text` is printed on one line (poppler splits words at
    any space, the narrow no-break space of French grouping included)."""
    parts = text.split()
    return [w for i, w in enumerate(words)
            if [v.text for v in words[i:i + len(parts)]] == parts
            and all(abs(v.y_min - w.y_min) < 1 for v in words[i:i + len(parts)])]


@pytest.mark.parametrize(("locale", "views", "score"), [
    (None, "400,000", "1,234.25"),              # the default: en
    ("fr", "400\u202f000", "1\u202f234,25"),     # narrow no-break space, decimal comma
    ("de", "400.000", "1.234,25"),
])
def test_the_kpi_the_table_and_the_axis_write_a_number_the_same_way(
        locale: str | None, views: str, score: str, printer, tmp_path: Path) -> None:
    # Given a KPI, an axis tick and a table cell that are all 400000, and a KPI and a cell of 1234.25
    definition = report(locale)

    # When herald writes the page, each is the same characters (SVG text for the tick)
    html = render_html(definition, RESULTS, tenant="Acme", params={}, generated_at=GENERATED_AT)
    assert html.count(f">{views}<") == 3 and html.count(f">{score}<") == 2

    # and once Chromium prints it, a reader finds 400000 written that way in the KPI tile, on the
    # chart's axis and in the table, and 1234.25 in the KPI and the table
    words = pdf_words(print_report(printer, definition, RESULTS), tmp_path)
    texts = [w.text for w in words]
    heading = {w.text: w for w in words if w.text in ("Views", "Videos")}
    found = phrase_at(words, views)
    assert len(found) == 3, texts
    kpi, tick, cell = sorted(found, key=lambda w: w.y_min)
    assert kpi.y_max < heading["Views"].y_min < tick.y_min < heading["Videos"].y_min < cell.y_min
    assert len(phrase_at(words, score)) == 2, texts
    assert "400000" not in texts and "1234.25" not in texts


def test_table_numbers_are_right_aligned_under_right_aligned_headers(printer, tmp_path: Path) -> None:
    words = pdf_words(print_report(printer, report("en"), RESULTS), tmp_path)
    videos = next(w for w in words if w.text == "Videos")
    table = [w for w in words if w.y_min > videos.y_max]
    for column, values in (("views", ["400,000", "250,000", "75,000"]), ("score", ["12.5", "1,234.25", "—"])):
        right_edges = {round(w.x_max) for w in table if w.text in (column, *values)}
        assert len(right_edges) == 1, (column, right_edges)
    title_left = {round(w.x_min) for w in table if w.text in ("title", "Video")}
    assert len(title_left) == 1  # text stays left-aligned


def test_table_times_are_shown_in_the_tenants_timezone(printer, tmp_path: Path) -> None:
    # The report was generated for a tenant in Europe/Moscow (UTC+3)
    texts = [w.text for w in pdf_words(print_report(printer, report("en"), RESULTS), tmp_path)]
    for day, time in (("2026-01-02", "00:30"), ("2026-01-02", "11:05"), ("2026-01-03", "00:00")):
        assert day in texts and time in texts
    assert not any("T21:30" in text or "+00:00" in text for text in texts)


@pytest.mark.parametrize("locale", ["xx", "english", "en-ZZZZ"])
def test_an_unknown_locale_is_refused_in_one_sentence(locale: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        report(locale)
    assert str(refused.value) == (f"report: locale {locale!r} is not a locale herald knows; "
                                  f"use a code such as en, fr, de or ru.")


def test_a_regional_locale_is_accepted_either_way() -> None:
    assert report("pt-BR").locale == report("pt_BR").locale == "pt_BR"


def test_a_given_tenant_timezone_wins_over_the_schedules() -> None:
    html = render_html(report("en"), RESULTS, tenant="Acme", params={}, generated_at=GENERATED_AT,
                       zone=ZoneInfo("America/New_York"))
    assert ">2026-01-01 16:30<" in html and ">2026-01-02 00:30<" not in html
