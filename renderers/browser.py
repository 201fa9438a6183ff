"""Chromium through Playwright: one browser per thread, reused, replaced when it dies.

Each thread keeps its own event loop, Playwright driver and browser, created
lazily (after a worker forks) and reused across renders. Every render gets a
fresh context with JavaScript off and every network request aborted, closed
after it. A new page costs a renderer process (~140 ms), so the next render's
context and page are started while the current one prints: Chromium spawns
it in parallel, and no context ever serves two reports. The async API lets a
render time out cleanly with `wait_for`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import escape
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from models.errors import RenderError

log = logging.getLogger("herald.browser")

SYSTEM_CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser",
                   "/usr/bin/google-chrome")
LAUNCH_ARGS = ["--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-default-apps", "--disable-extensions", "--mute-audio"]
FOOTER = ('<div style="width:100%;font-family:DejaVu Sans,sans-serif;font-size:8px;color:#5a6372;'
          'padding:0 14mm;display:flex;justify-content:space-between">'
          '<span class="title"></span><span>page <span class="pageNumber"></span> of '
          '<span class="totalPages"></span></span></div>')


def find_chromium(setting: str | None, playwright_path: str | None) -> str | None:
    """The browser binary: the setting, else Playwright's own download, else the system's.

    None means "let Playwright choose", which fails with its own message if nothing is there.
    """
    if setting:
        if not Path(setting).exists():
            raise RenderError(f"HERALD_CHROMIUM_PATH={setting} does not exist; point it at a "
                              f"Chromium binary or unset it.")
        return setting
    if playwright_path and Path(playwright_path).exists():
        return None
    for candidate in (*SYSTEM_CHROMIUM, shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise RenderError("No Chromium found; run `playwright install chromium`, install the system "
                      "package (apt-get install chromium), or set HERALD_CHROMIUM_PATH.")


@dataclass
class _ThreadBrowser:
    loop: asyncio.AbstractEventLoop
    playwright: Playwright | None = None
    browser: Browser | None = None
    spare: asyncio.Task | None = None   # the next render's fresh context and page
    launches: int = 0
    pid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: set[asyncio.Task] = field(default_factory=set)


class ChromiumPrinter:
    """Prints HTML to PDF with a warm browser per thread."""

    def __init__(self, executable: str | None = None, timeout_s: float = 60.0) -> None:
        self.executable_setting = executable
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _state(self) -> _ThreadBrowser:
        state = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            state = _ThreadBrowser(loop=asyncio.new_event_loop(), pid=os.getpid())
            self._local.state = state
        return state

    async def _browser(self, state: _ThreadBrowser) -> Browser:
        if state.browser is not None and state.browser.is_connected():
            return state.browser
        if state.playwright is None:
            state.playwright = await async_playwright().start()
        executable = find_chromium(self.executable_setting, state.playwright.chromium.executable_path)
        state.browser = await state.playwright.chromium.launch(
            executable_path=executable, args=LAUNCH_ARGS, headless=True)
        state.launches += 1
        log.info("launched Chromium (%s launch in this thread)", state.launches)
        return state.browser

    async def _fresh_page(self, browser: Browser) -> tuple[BrowserContext, Page]:
        context = await browser.new_context(java_script_enabled=False, service_workers="block",
                                            offline=True)
        try:
            # Nothing from a report reaches the network: every request but inline data is aborted.
            await context.route("**/*", _block_all_but_data)
            return context, await context.new_page()
        except BaseException:
            await context.close()
            raise

    async def _take_page(self, state: _ThreadBrowser) -> tuple[BrowserContext, Page]:
        spare, state.spare = state.spare, None
        fresh = None
        if spare is not None:
            try:
                fresh = await spare
            except PlaywrightError:
                fresh = None  # the browser died since; launch again below
        browser = await self._browser(state)
        if fresh is None:
            fresh = await self._fresh_page(browser)
        state.spare = state.loop.create_task(self._fresh_page(browser))
        return fresh

    async def _print(self, state: _ThreadBrowser, html: str, title: str) -> bytes:
        context, page = await self._take_page(state)
        try:
            await page.set_content(html, wait_until="load")
            return await page.pdf(format="A4", print_background=True, display_header_footer=True,
                                  header_template="<span></span>",
                                  footer_template=FOOTER.replace('<span class="title"></span>',
                                                                 f"<span>{escape(title)}</span>"),
                                  margin={"top": "16mm", "bottom": "18mm", "left": "14mm", "right": "14mm"})
        finally:
            closing = state.loop.create_task(_close_quietly(context))
            state.closing.add(closing)
            closing.add_done_callback(state.closing.discard)

    def print_pdf(self, html: str, title: str = "") -> bytes:
        """The HTML as PDF bytes; a dead browser is replaced once, a slow render is a RenderError."""
        state = self._state()
        with state.lock:
            for attempt in (1, 2):
                try:
                    return state.loop.run_until_complete(
                        asyncio.wait_for(self._print(state, html, title), self.timeout_s))
                except asyncio.TimeoutError:
                    self._discard(state)  # a hung browser is not reused
                    raise RenderError(f"rendering the PDF took longer than {self.timeout_s:g} s; "
                                      f"the browser was restarted.") from None
                except PlaywrightError as exc:
                    alive = state.browser is not None and state.browser.is_connected()
                    self._discard(state)
                    if attempt == 2 or alive:
                        raise RenderError(f"the browser failed to render the PDF: {exc.message.splitlines()[0]}") from None
                    log.warning("Chromium had died; relaunching it for this render")
        raise AssertionError("unreachable")

    def _discard(self, state: _ThreadBrowser) -> None:
        """Drop the browser (and the page prepared in it); the next render launches another."""
        spare, state.spare = state.spare, None
        browser, state.browser = state.browser, None

        async def shut() -> None:
            if state.closing:
                await asyncio.gather(*state.closing, return_exceptions=True)
            if spare is not None:
                spare.cancel()
                try:
                    context, _page = await spare
                    await _close_quietly(context)
                except (asyncio.CancelledError, PlaywrightError):
                    pass
            if browser is not None:
                await asyncio.wait_for(browser.close(), 5)

        try:
            state.loop.run_until_complete(shut())
        except (PlaywrightError, asyncio.TimeoutError):
            pass

    @property
    def launches(self) -> int:
        """How many times this thread launched a browser (1 while it stays warm)."""
        return self._state().launches

    def close(self) -> None:
        state = getattr(self._local, "state", None)
        if state is None:
            return
        self._discard(state)
        if state.playwright is not None:
            state.loop.run_until_complete(state.playwright.stop())
        state.loop.close()
        self._local.state = None


async def _close_quietly(context: BrowserContext) -> None:
    try:
        await asyncio.wait_for(context.close(), 5)
    except (PlaywrightError, asyncio.TimeoutError):
        pass


async def _block_all_but_data(route) -> None:
    if route.request.url.startswith("data:"):
        await route.continue_()
    else:
        log.warning("blocked a request from a report page: %s", route.request.url[:200])
        await route.abort()
