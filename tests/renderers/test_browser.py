"""The printer: nothing reaches the network, charts stay vectors, a dead browser is
replaced, a slow render is an error, and the stub needs no browser."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import async_playwright

from models.definition import parse_definition
from models.errors import RenderError
from renderers import browser
from renderers.browser import LAUNCH_ARGS, ChromiumPrinter, find_chromium
from renderers.html import render_html
from renderers.pdf import stub_pdf
from tests.renderers.conftest import pdf_images, pdf_text


def external_html(base: str) -> str:
    """A page that would fetch from `base` in every way HTML and CSS allow."""
    return f"""<!doctype html><html><head>
      <link rel="stylesheet" href="{base}/style.css">
      <script src="{base}/script.js"></script>
      <style>@font-face {{ font-family: X; src: url({base}/font.woff2); }}
             body {{ font-family: X; background: url({base}/background.png); }}</style>
      <link rel="preload" href="{base}/preload" as="fetch">
      </head><body><h1>Report</h1>
      <img src="{base}/image.png"><iframe src="{base}/frame"></iframe>
      <object data="{base}/object"></object><video src="{base}/video" autoplay></video>
      <script>fetch("{base}/fetch")</script></body></html>"""


@pytest.mark.parametrize("key", [None, "tenant-1"])  # a fresh context each time, or a held one
def test_a_page_that_would_load_external_resources_makes_no_request(printer, recording_server,
                                                                     tmp_path: Path, key) -> None:
    printer.print_pdf("<p>warm</p>", "t", key)
    pdf = printer.print_pdf(external_html(recording_server.url), "t", key)
    assert "Report" in pdf_text(pdf, tmp_path)
    assert recording_server.requests == []


def test_without_blocking_the_same_page_does_reach_the_server(recording_server) -> None:
    """The control for the test above: the page really does make requests."""

    async def load() -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=find_chromium(None, p.chromium.executable_path),
                                              args=LAUNCH_ARGS)
            page = await browser.new_page()
            await page.set_content(external_html(recording_server.url), wait_until="load")
            await browser.close()

    asyncio.run(load())
    assert "/image.png" in recording_server.requests


def test_hostile_report_data_cannot_inject_a_request(printer, recording_server, tmp_path: Path) -> None:
    definition = parse_definition({"slug": "r", "title": "R", "sections": [
        {"kind": "table", "title": "T", "sql": "SELECT 1"}]})
    evil = f'<img src="{recording_server.url}/from-data.png"><link rel=stylesheet href="{recording_server.url}/x.css">'
    html = render_html(definition, [{"kind": "table", "title": "T", "columns": ["v"], "rows": [[evil]], "total": 1}],
                       tenant=evil, params={"p": evil}, generated_at=datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    text = pdf_text(printer.print_pdf(html, "R"), tmp_path)
    assert "from-data.png" in text  # shown as text
    assert recording_server.requests == []


CHART_REPORT = parse_definition({"slug": "c", "title": "Charts", "sections": [
    {"kind": "chart", "title": "Views by platform", "sql": "SELECT 1",
     "chart": {"mark": "bar", "x": "platform", "y": "views"}},
    {"kind": "chart", "title": "Views over time", "sql": "SELECT 1",
     "chart": {"mark": "line", "x": "day", "y": "views"}},
]})


def test_charts_are_vector_with_extractable_axis_labels(printer, tmp_path: Path) -> None:
    results = [
        {"kind": "chart", "title": "Views by platform", "columns": ["platform", "views"],
         "rows": [["tiktok", 120], ["youtube", 340], ["instagram", 90]], "total": 3},
        {"kind": "chart", "title": "Views over time", "columns": ["day", "views"],
         "rows": [["2026-03-01", 10], ["2026-03-02", 30], ["2026-03-03", 20]], "total": 3},
    ]
    html = render_html(CHART_REPORT, results, tenant="Acme", params={},
                       generated_at=datetime(2026, 3, 4, tzinfo=ZoneInfo("UTC")))
    pdf = printer.print_pdf(html, "Charts")
    text = pdf_text(pdf, tmp_path)
    for label in ("tiktok", "youtube", "instagram", "platform", "views", "2 Mar", "300"):
        assert label in text, label
    assert pdf_images(pdf, tmp_path) == []  # no embedded raster image


def chromium_children() -> list[int]:
    """Chromium processes started (through Playwright's driver) by this test process."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            commands[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 1)
            if pid == os.getpid():
                return True
        return False

    return [pid for pid, cmd in commands.items() if "chrom" in cmd and "--type=" not in cmd and descends(pid)]


def test_a_killed_browser_is_replaced_and_the_next_render_succeeds(tmp_path: Path) -> None:
    printer = ChromiumPrinter(timeout_s=60)
    try:
        assert "one" in pdf_text(printer.print_pdf("<p>one</p>"), tmp_path)
        assert printer.launches == 1
        browsers = chromium_children()
        assert browsers, "no Chromium process found"
        for pid in browsers:
            os.kill(pid, signal.SIGKILL)
        assert "two" in pdf_text(printer.print_pdf("<p>two</p>"), tmp_path)
        assert printer.launches == 2
        assert "three" in pdf_text(printer.print_pdf("<p>three</p>"), tmp_path)
        assert printer.launches == 2  # warm again
    finally:
        printer.close()


def test_a_render_slower_than_the_timeout_is_a_render_error(tmp_path: Path) -> None:
    printer = ChromiumPrinter(timeout_s=60)
    try:
        printer.print_pdf("<p>warm</p>")
        printer.timeout_s = 0.001
        with pytest.raises(RenderError, match=r"took longer than 0.001 s; the browser was restarted"):
            printer.print_pdf("<p>" + "slow " * 20000 + "</p>")
        printer.timeout_s = 60
        assert "after" in pdf_text(printer.print_pdf("<p>after</p>"), tmp_path)
    finally:
        printer.close()


def test_the_stub_is_a_valid_pdf_without_a_browser(tmp_path: Path) -> None:
    text = pdf_text(stub_pdf(["Weekly views", "Total views: 1 234", "PDF rendering is stubbed"]), tmp_path)
    assert "Weekly views" in text and "Total views: 1 234" in text


def test_a_missing_configured_browser_is_named(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="HERALD_CHROMIUM_PATH=/nope/chrome does not exist"):
        find_chromium("/nope/chrome", None)


def test_the_stub_renderer_makes_the_report_pdf_without_a_browser(tmp_path: Path, monkeypatch) -> None:
    from models.base import Format
    from models.settings import get_settings
    from renderers import RENDERERS
    from renderers.job import RenderJob

    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()
    definition = parse_definition({"slug": "r", "title": "Weekly views", "sections": [
        {"kind": "kpi", "title": "Total", "sql": "SELECT 1", "column": "total"}]})
    now = datetime(2026, 3, 2, tzinfo=ZoneInfo("UTC"))
    job = RenderJob(definition=definition, params={}, tenant="Acme", datasource_url="", generated_at=now,
                    period=now.date(), results=[{"kind": "kpi", "title": "Total", "columns": ["n", "total"],
                                                 "rows": [[7, 1234]], "total": 1}])
    document = RENDERERS[Format.PDF](job, tmp_path)
    text = pdf_text(document.path, tmp_path)
    get_settings.cache_clear()
    assert "Weekly views" in text and "Total: 1,234" in text
    assert "stubbed" in text and document.filename == "r-2026-03-02.pdf"


def test_one_tenants_renders_share_a_context_and_no_other_tenant_ever_uses_it(printer, tmp_path: Path) -> None:
    # Given a first render for tenant 1 (its context, plus the next one prepared ahead)
    printer.print_pdf("<p>alpha one</p>", "t", "tenant-1")
    opened = printer.contexts_opened

    # When tenant 1 renders again, it reuses its context, and shows only the new document
    again = pdf_text(printer.print_pdf("<p>alpha two</p>", "t", "tenant-1"), tmp_path)
    assert printer.contexts_opened == opened
    assert "alpha two" in again and "alpha one" not in again

    # When tenant 2 renders, it gets a context of its own
    other = pdf_text(printer.print_pdf("<p>beta</p>", "t", "tenant-2"), tmp_path)
    assert printer.contexts_opened == opened + 1
    assert "beta" in other and "alpha" not in other

    # and renders without a key never share one
    for text in ("gamma", "delta"):
        before = printer.contexts_opened
        printer.print_pdf(f"<p>{text}</p>", "t")
        assert printer.contexts_opened == before + 1


def test_a_held_context_is_recycled_after_its_quota(printer, monkeypatch) -> None:
    monkeypatch.setattr(browser, "MAX_RENDERS_PER_CONTEXT", 2)
    printer.print_pdf("<p>1</p>", "t", "tenant-1")
    opened = printer.contexts_opened
    printer.print_pdf("<p>2</p>", "t", "tenant-1")
    assert printer.contexts_opened == opened
    printer.print_pdf("<p>3</p>", "t", "tenant-1")
    assert printer.contexts_opened == opened + 1
