"""PDF render time for one three-section report (KPI, chart, 200-row table), N times.

(a) herald: HTML (Jinja2 + Vega-Lite SVG) and print through herald's warm per-thread
    browser, JS off and every request blocked; one tenant's renders in a row share
    its context (HERALD_RENDER_ISOLATION=tenant, the default). Also shown: (a') a
    different tenant every render, so a fresh context each time (the worst case
    for a shared render queue, and HERALD_RENDER_ISOLATION=render).
(b) a browser launched per render (seed 000 and Superset's way): launch, page,
    set_content, pdf, close.
(c) raw Playwright on a warm browser, the same HTML: new page (a fresh context),
    set_content, pdf; and one page reused for every render (the like-for-like
    comparison for (a)).

    python bench/render.py [--n 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402

from models.definition import parse_definition  # noqa: E402
from renderers.browser import LAUNCH_ARGS, ChromiumPrinter, find_chromium, pdf_options  # noqa: E402
from renderers.html import render_html  # noqa: E402

REPORT = parse_definition({"slug": "bench", "title": "Video performance", "sections": [
    {"kind": "kpi", "title": "Total views", "sql": "SELECT 1"},
    {"kind": "chart", "title": "Views by platform", "sql": "SELECT 1",
     "chart": {"mark": "bar", "x": "platform", "y": "views"}},
    {"kind": "table", "title": "Top videos", "sql": "SELECT 1"},
]})
RESULTS = [
    {"kind": "kpi", "title": "Total views", "columns": ["value"], "rows": [[123456789]], "total": 1},
    {"kind": "chart", "title": "Views by platform", "columns": ["platform", "views"],
     "rows": [["tiktok", 5200], ["youtube", 8100], ["instagram", 2300], ["vk", 900]], "total": 4},
    {"kind": "table", "title": "Top videos", "columns": ["title", "platform", "views"],
     "rows": [[f"Video {i}", ["tiktok", "youtube"][i % 2], 100_000 - i] for i in range(200)], "total": 200},
]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Europe/Moscow"))
PDF_OPTIONS = pdf_options(REPORT.title)  # the same document from every path: footer, page numbers


def herald_render(printer: ChromiumPrinter, key: str | None) -> bytes:
    html = render_html(REPORT, RESULTS, tenant="Acme", params={}, generated_at=NOW)
    return printer.print_pdf(html, REPORT.title, key)


def timed(function, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        pdf = function()
        times.append(time.perf_counter() - started)
        assert pdf[:5] == b"%PDF-"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    html = render_html(REPORT, RESULTS, tenant="Acme", params={}, generated_at=NOW)

    printer = ChromiumPrinter(timeout_s=60)
    herald_render(printer, "tenant-1")  # warm: browser launch, vl-convert's engine
    a = timed(lambda: herald_render(printer, "tenant-1"), args.n)
    a_print = timed(lambda: printer.print_pdf(html, REPORT.title, "tenant-1"), args.n)
    tenants = iter(range(10**6))
    a_fresh = timed(lambda: herald_render(printer, f"tenant-{next(tenants)}"), args.n)
    printer.close()

    with sync_playwright() as p:
        executable = find_chromium(None, p.chromium.executable_path)

        def per_launch() -> bytes:
            browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
            try:
                page = browser.new_page()
                page.set_content(html)
                return page.pdf(**PDF_OPTIONS)
            finally:
                browser.close()

        b = timed(per_launch, max(5, args.n // 3))

        browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)

        def warm_new_page() -> bytes:
            page = browser.new_page()
            try:
                page.set_content(html)
                return page.pdf(**PDF_OPTIONS)
            finally:
                page.close()

        warm_new_page()
        c = timed(warm_new_page, args.n)
        reused = browser.new_page()

        def warm_one_page() -> bytes:
            reused.set_content(html)
            return reused.pdf(**PDF_OPTIONS)

        warm_one_page()
        c_reused = timed(warm_one_page, args.n)
        browser.close()

    med = {name: statistics.median(t) * 1000 for name, t in
           {"a": a, "a_print": a_print, "a_fresh": a_fresh, "b": b, "c": c,
            "c_reused": c_reused}.items()}
    print(f"report: KPI + bar chart + 200-row table on A4, medians of {args.n} renders")
    print(f"  (a)  herald, one tenant's renders in a row (shared context): {med['a']:7.1f} ms")
    print(f"       herald printing only, the same HTML as (c):             {med['a_print']:7.1f} ms")
    print(f"  (a') herald, another tenant every render (fresh context):   {med['a_fresh']:7.1f} ms")
    print(f"  (b)  browser launched per render:                           {med['b']:7.1f} ms")
    print(f"  (c)  raw Playwright, warm browser, one page reused:         {med['c_reused']:7.1f} ms")
    print(f"       raw Playwright, warm browser, new page per render:     {med['c']:7.1f} ms")
    print(f"  (b)/(a)  = {med['b'] / med['a']:.2f}  (goal >= 4)")
    print(f"  (a)/(c)  = {med['a'] / med['c_reused']:.2f}  (goal <= 1.25); printing only: "
          f"{med['a_print'] / med['c_reused']:.2f}")
    print(f"  (b)/(a') = {med['b'] / med['a_fresh']:.2f};  (a')/(raw new page) = {med['a_fresh'] / med['c']:.2f}")

if __name__ == "__main__":
    main()
