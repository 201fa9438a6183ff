"""Secrets never reach logs, errors or the database's error columns."""

from __future__ import annotations

import re

from models.settings import get_settings

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")


def redact(text: str, *secrets: str | None) -> str:
    """`text` with URL passwords, herald's configured secrets and `secrets` masked."""
    settings = get_settings()
    known = [settings.mail_smtp_pass, settings.telegram_bot_token]
    values = [s.get_secret_value() for s in known if s is not None] + [s for s in secrets if s]
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return _URL_PASSWORD.sub(r"\g<head>***@", text)
