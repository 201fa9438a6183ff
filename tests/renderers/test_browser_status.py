"""The render browser's status in Redis: written on each launch and failed launch, refreshed by
renders at most once a minute, expiring with its process, and never failing a render.

The failed launch is real (HERALD_CHROMIUM_PATH names no file, so the printer cannot start
Chromium anywhere); the successful one needs Chromium, as the other renderer tests do.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from models.errors import RenderError
from models.health import (
    RENDER_BROWSER_TTL_SECONDS,
    RenderBrowserBeacon,
    host_name,
    read_render_browsers,
    render_browser_key,
)
from models.settings import get_settings
from renderers.browser import ChromiumPrinter, find_chromium
from tests.conftest import REDIS_TEST_URL, service_missing

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MISSING = "/nonexistent/chromium"


class Clock:
    """A settable wall clock for the beacon."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def stored(redis_client, namespace: str) -> dict:
    return json.loads(redis_client.get(render_browser_key(namespace, host_name(), os.getpid())))


def test_a_failed_launch_is_recorded_and_the_render_still_fails_with_its_reason(
        redis_namespace: str, redis_client) -> None:
    printer = ChromiumPrinter(MISSING, timeout_s=30)  # the beacon comes from REDIS_URL
    try:
        with pytest.raises(RenderError, match="HERALD_CHROMIUM_PATH=/nonexistent/chromium does not exist"):
            printer.print_pdf("<p>x</p>", "t")
    finally:
        printer.close()
    [status] = read_render_browsers(REDIS_TEST_URL, redis_namespace)
    assert (status.host, status.pid, status.ok, status.version) == (host_name(), os.getpid(), False, None)
    assert status.error.startswith("HERALD_CHROMIUM_PATH=/nonexistent/chromium does not exist")
    key = render_browser_key(redis_namespace, host_name(), os.getpid())
    assert 0 < redis_client.ttl(key) <= RENDER_BROWSER_TTL_SECONDS


def test_an_unreachable_redis_never_fails_a_render_and_is_logged_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    beacon = RenderBrowserBeacon("redis://127.0.0.1:1/0", "herald")
    printer = ChromiumPrinter(MISSING, timeout_s=30, beacon=beacon)
    try:
        with caplog.at_level(logging.WARNING, logger="herald.health"):
            for _ in range(2):  # the render's own error, both times; Redis's is only logged
                with pytest.raises(RenderError, match="does not exist"):
                    printer.print_pdf("<p>x</p>", "t")
    finally:
        printer.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "herald.health"]
    assert warnings == ["the render browser's status could not be written to Redis "
                        "(ConnectionError); the admin will not show it"]


def test_renders_refresh_the_record_at_most_once_a_minute(redis_namespace: str, redis_client) -> None:
    clock = Clock()
    beacon = RenderBrowserBeacon(REDIS_TEST_URL, redis_namespace, clock=clock)
    beacon.launched("131.0.6778.33")
    clock.now = T0 + timedelta(seconds=59)
    beacon.rendered()
    assert stored(redis_client, redis_namespace)["seen_at"] == T0.isoformat()
    clock.now = T0 + timedelta(seconds=61)
    beacon.rendered()
    record = stored(redis_client, redis_namespace)
    assert (record["at"], record["seen_at"]) == (T0.isoformat(), clock.now.isoformat())
    assert (record["ok"], record["version"], record["error"]) == (True, "131.0.6778.33", None)


def test_without_redis_the_beacon_writes_nothing(redis_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    printer = ChromiumPrinter(MISSING)
    assert printer.beacon.enabled is False
    printer.beacon.failed("No Chromium found.")  # a no-op: embedded mode has nowhere to publish


def test_a_launch_records_the_chromium_version(redis_namespace: str) -> None:
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            find_chromium(None, p.chromium.executable_path)
    except RenderError as exc:
        service_missing("Chromium", exc)
    printer = ChromiumPrinter(timeout_s=60)
    try:
        assert printer.print_pdf("<p>x</p>", "t").startswith(b"%PDF")
    finally:
        printer.close()
    [status] = read_render_browsers(REDIS_TEST_URL, redis_namespace)
    assert status.ok and status.error is None and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", status.version)
