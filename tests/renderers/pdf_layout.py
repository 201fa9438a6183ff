"""Where a PDF's words are, as poppler reads them (`pdftotext -bbox-layout`), and which overlap."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from models.definition import ReportDefinition
from renderers.browser import ChromiumPrinter
from renderers.html import render_html
from tests.conftest import service_missing

XHTML = "{http://www.w3.org/1999/xhtml}"
FOOTER_PT = 18 / 25.4 * 72  # the page's bottom margin (18 mm), where the footer is printed
GENERATED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Europe/Moscow"))


class Word(NamedTuple):
    page: int
    text: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def overlaps(self, other: Word, tolerance: float = 0.5) -> bool:
        """True when the two boxes share an area wider and taller than `tolerance` points."""
        return (self.page == other.page
                and min(self.x_max, other.x_max) - max(self.x_min, other.x_min) > tolerance
                and min(self.y_max, other.y_max) - max(self.y_min, other.y_min) > tolerance)


def pdf_words(pdf: bytes, tmp_path: Path) -> list[Word]:
    """Every word of every page with its box, in points from the page's top left."""
    if shutil.which("pdftotext") is None:
        service_missing("pdftotext (poppler-utils)", FileNotFoundError("apt-get install poppler-utils"))
    path = tmp_path / "layout.pdf"
    path.write_bytes(pdf)
    xhtml = subprocess.run(["pdftotext", "-enc", "UTF-8", "-bbox-layout", str(path), "-"], check=True,
                           capture_output=True, text=True).stdout
    words = []
    for number, page in enumerate(ET.fromstring(xhtml).iter(f"{XHTML}page"), start=1):
        bottom = float(page.get("height")) - FOOTER_PT
        for word in page.iter(f"{XHTML}word"):
            box = [float(word.get(k)) for k in ("xMin", "yMin", "xMax", "yMax")]
            if box[1] < bottom:
                words.append(Word(number, word.text or "", *box))
    return words


def words_below(words: list[Word], heading: str) -> list[Word]:
    """The words under the line that reads `heading` on its page (a one-chart document's chart)."""
    first = heading.split()[0]
    anchor = next(w for w in words if w.text == first)
    return [w for w in words if w.page == anchor.page and w.y_min > anchor.y_max]


def overlapping(words: list[Word]) -> list[tuple[Word, Word]]:
    return [(a, b) for a, b in combinations(words, 2) if a.overlaps(b)]


def print_report(printer: ChromiumPrinter, definition: ReportDefinition, results: list[dict]) -> bytes:
    """The report as recipients get it: herald's HTML printed by a real Chromium."""
    html = render_html(definition, results, tenant="Acme", params={}, generated_at=GENERATED_AT)
    return printer.print_pdf(html, definition.title)
