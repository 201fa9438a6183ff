"""Fixtures the admin's tests share."""

from __future__ import annotations

import pytest

from models.settings import get_settings


@pytest.fixture
def stub_pdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


@pytest.fixture
def real_pdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    get_settings.cache_clear()
