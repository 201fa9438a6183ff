"""Chromium through Playwright: one browser per thread, reused, replaced when it dies.

Each thread keeps its own event loop, Playwright driver and browser, created
lazily (after a worker forks) and reused across renders. Pages live in contexts
with JavaScript off, offline, and every network request but `data:` aborted, so
a page keeps no cookies, storage, cache or scripts from one document to the next.

A fresh context's first page costs a renderer process (~80-140 ms of CPU, most
of a render), so consecutive renders for the same key (the tenant) share one
context, recycled after MAX_RENDERS_PER_CONTEXT renders; a context never serves
two tenants, and a render that fails closes its context. Without a key (or with
HERALD_RENDER_ISOLATION=render) every render gets a fresh context. The next fresh
context is prepared ahead, while the current render prints. The async API lets a
render time out cleanly with `wait_for`. Each launch, and each failed launch, is published
for the admin's Health page (`models.health.RenderBrowserBeacon`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from models.errors import RenderError
from models.health import RenderBrowserBeacon

log = logging.getLogger("herald.browser")

MAX_RENDERS_PER_CONTEXT = 100
OPEN_TIMEOUT_S = 15.0  # opening a page, or loading a document into one


class _Unresponsive(Exception):
    """Raised when the browser cannot open a page in time: it is replaced, like a dead one."""

SYSTEM_CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser",
                   "/usr/bin/google-chrome")
LAUNCH_ARGS = ["--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-default-apps", "--disable-extensions", "--mute-audio"]
def pdf_options(title: str) -> dict:
    """Page.pdf options: A4 with the report's margins, backgrounds. The footer (the title and
    "page N of M") is the report's own, in its @page margin boxes (renderers/templates)."""
    return {"format": "A4", "print_background": True,
            "margin": {"top": "16mm", "bottom": "18mm", "left": "14mm", "right": "14mm"}}


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
    spare: asyncio.Task | None = None   # the next fresh context and page, prepared ahead
    held: tuple[BrowserContext, Page] | None = None  # the current tenant's context, kept warm
    held_key: str | None = None
    held_renders: int = 0
    launches: int = 0
    contexts: int = 0
    pid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: set[asyncio.Task] = field(default_factory=set)


class ChromiumPrinter:
    """Prints HTML to PDF with a warm browser per thread."""

    def __init__(self, executable: str | None = None, timeout_s: float = 60.0,
                 beacon: RenderBrowserBeacon | None = None) -> None:
        self.executable_setting = executable
        self.timeout_s = timeout_s
        self.beacon = beacon or _settings_beacon()
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
        try:
            executable = find_chromium(self.executable_setting, state.playwright.chromium.executable_path)
            # herald closes its browsers itself (a worker thread's shutdown, the demo's Ctrl-C):
            # Chromium must not die of a terminal's Ctrl-C under a render in progress.
            state.browser = await state.playwright.chromium.launch(
                executable_path=executable, args=LAUNCH_ARGS, headless=True,
                handle_sigint=False, handle_sigterm=False, handle_sighup=False)
        except RenderError as exc:
            self.beacon.failed(str(exc))
            raise
        except PlaywrightError as exc:
            self.beacon.failed(f"Chromium did not start: {exc.message.splitlines()[0]}")
            raise
        state.launches += 1
        self.beacon.launched(state.browser.version)
        log.info("launched Chromium %s (%s launch in this thread)", state.browser.version, state.launches)
        return state.browser

    async def _fresh_page(self, browser: Browser) -> tuple[BrowserContext, Page]:
        context = await browser.new_context(java_script_enabled=False, service_workers="block",
                                            offline=True)
        self._state().contexts += 1
        try:
            # Nothing from a report reaches the network: every request but inline data is aborted.
            await context.route("**/*", _block_all_but_data)
            return context, await context.new_page()
        except BaseException:
            await context.close()
            raise

    async def _take_page(self, state: _ThreadBrowser) -> tuple[BrowserContext, Page]:
        """A fresh context and page: the one prepared ahead, else a new one; the next is started.

        Opening a page takes well under a second; a browser that cannot do it in
        OPEN_TIMEOUT_S (killed, but not yet noticed by the driver) is treated as dead.
        """
        spare, state.spare = state.spare, None
        fresh = None
        if spare is not None:
            try:
                fresh = await asyncio.wait_for(spare, OPEN_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise _Unresponsive() from None
            except PlaywrightError:
                fresh = None  # the browser died since; launch again below
        browser = await self._browser(state)
        if fresh is None:
            try:
                fresh = await asyncio.wait_for(self._fresh_page(browser), OPEN_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise _Unresponsive() from None
        state.spare = state.loop.create_task(self._fresh_page(browser))
        return fresh

    async def _page_for(self, state: _ThreadBrowser, key: str | None) -> tuple[BrowserContext, Page]:
        """The held page when `key` (the tenant) rendered last in this thread, else a fresh one.

        A context never serves two keys: a new key closes the held context first.
        """
        if (key is not None and state.held is not None and state.held_key == key
                and state.held_renders < MAX_RENDERS_PER_CONTEXT and not state.held[1].is_closed()):
            state.held_renders += 1
            return state.held
        self._release_held(state)
        context, page = await self._take_page(state)
        if key is not None:
            state.held, state.held_key, state.held_renders = (context, page), key, 1
        return context, page

    def _release_held(self, state: _ThreadBrowser) -> None:
        held, state.held, state.held_key = state.held, None, None
        if held is not None:
            _close_later(state, held[0])

    async def _print(self, state: _ThreadBrowser, html: str, title: str, key: str | None) -> bytes:
        context, page = await self._page_for(state, key)
        done = False
        try:
            try:  # inline HTML with no network loads in well under a second
                await page.set_content(html, wait_until="load", timeout=OPEN_TIMEOUT_S * 1000)
            except PlaywrightTimeoutError:
                raise _Unresponsive() from None
            pdf = await page.pdf(**pdf_options(title))
            done = True
            return pdf
        finally:
            if state.held is None or state.held[0] is not context:
                _close_later(state, context)  # an unkeyed render's context serves once
            elif not done:
                self._release_held(state)  # nor is a context reused after a failed render

    def print_pdf(self, html: str, title: str = "", key: str | None = None) -> bytes:
        """The HTML as PDF bytes; a dead browser is replaced once, a slow render is a RenderError.

        Renders with the same `key` (herald passes the tenant) in a row share one browser
        context, recycled every MAX_RENDERS_PER_CONTEXT renders; without a key every
        render gets a fresh context.
        """
        state = self._state()
        with state.lock:
            for attempt in (1, 2):
                try:
                    pdf = state.loop.run_until_complete(
                        asyncio.wait_for(self._print(state, html, title, key), self.timeout_s))
                    self.beacon.rendered()
                    return pdf
                except _Unresponsive:
                    self._discard(state)
                    if attempt == 2:
                        raise RenderError("the browser stopped answering; it was restarted, and "
                                          "did not answer either.") from None
                    log.warning("Chromium stopped answering; relaunching it for this render")
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
        """Drop the browser (and the pages prepared in it); the next render launches another."""
        spare, state.spare = state.spare, None
        state.held, state.held_key = None, None
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

    @property
    def contexts_opened(self) -> int:
        """How many browser contexts this thread opened (prepared ahead ones included)."""
        return self._state().contexts

    def close(self) -> None:
        state = getattr(self._local, "state", None)
        if state is None:
            return
        self._discard(state)
        if state.playwright is not None:
            state.loop.run_until_complete(state.playwright.stop())
        state.loop.close()
        self._local.state = None


def _settings_beacon() -> RenderBrowserBeacon:
    from models.settings import get_settings

    settings = get_settings()
    return RenderBrowserBeacon(settings.redis_url, settings.redis_namespace)


def _close_later(state: _ThreadBrowser, context: BrowserContext) -> None:
    """Close `context` on the thread's loop without holding up the render that used it."""
    closing = state.loop.create_task(_close_quietly(context))
    state.closing.add(closing)
    closing.add_done_callback(state.closing.discard)


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
