"""Secrets never reach logs, errors or the database's error columns.

`redact()` masks URL passwords, password-like query parameters and connection-string
keys, herald's configured secrets and every secret `remember_secret()` was given.
The error columns (`models.db.RedactedText`) and herald's log records apply it.
"""

from __future__ import annotations

import logging
import re
import threading

from models.errors import SettingsError
from models.settings import get_settings

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")
# `?password=…`, `&token=…`, libpq's `password = '…'`, ODBC's `PWD=…;`: the value runs to a
# quote's end, else to whitespace or `&` (a `;` or `)` after it is masked too, never leaked).
_KEY_VALUE = re.compile(
    r"(?P<head>(?<![a-z0-9])(?:password|passwd|pass|pwd|token|secret|api[_-]?key)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&'\"]+)",
    re.IGNORECASE,
)

_remembered: frozenset[str] = frozenset()
_remembering = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Mask `value` in everything redacted from now on, process-wide (shorter than 4: ignored)."""
    global _remembered
    if value and len(value) >= MIN_SECRET_LENGTH and value not in _remembered:
        with _remembering:
            _remembered = _remembered | {value}


def _configured_secrets() -> set[str]:
    """MAIL_SMTP_PASS and TELEGRAM_BOT_TOKEN; none when the settings themselves are invalid
    (their error never echoes a secret's value)."""
    try:
        settings = get_settings()
    except SettingsError:
        return set()
    configured = (settings.mail_smtp_pass, settings.telegram_bot_token, settings.jwt_secret)
    return {s.get_secret_value() for s in configured if s is not None}


def redact(text: str) -> str:
    """`text` with URL and key=value passwords and configured and remembered secrets masked."""
    values = _configured_secrets() | _remembered
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
    return _KEY_VALUE.sub(rf"\g<head>{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's formatted message; a record with none is left as it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            masked = redact(message)
        except Exception:  # noqa: BLE001 - a bad record or settings must not break the log call
            return True
        if masked != message:
            record.msg, record.args = masked, ()
        return True


LOG_FILTER = RedactingFilter()


def _install_log_filter() -> None:
    """Run `LOG_FILTER` on every record of the "herald" logger tree as the record is made."""
    # Not `getLogger("herald").addFilter(...)`: a logger's filters never see its children's
    # records ("herald.tick", "herald.deliver", ...). Handlers and the last-resort output
    # when logging is not configured stay as they were.
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts_herald", False):
        return

    def redacting_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.name == "herald" or record.name.startswith("herald."):
            LOG_FILTER.filter(record)
        return record

    redacting_record.redacts_herald = True
    logging.setLogRecordFactory(redacting_record)


_install_log_filter()
