"""How herald's processes log: `configure_logging()` picks text or JSON lines and herald's level.

HERALD_LOG_FORMAT=text (default) writes one readable line per record; `json` writes one
JSON object per line, with the fields a record carries in `extra=` (run_id, delivery_id,
tenant, schedule_id, ... on state changes) as keys. Both formats pass the whole output,
exception text included, through `models.redact.redact`, on top of the record factory
that already masks herald's own messages: a secret in a library's traceback is masked too.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from models.redact import redact
from models.settings import Settings, get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class RedactingTextFormatter(logging.Formatter):
    """A plain line, with secrets masked in the message and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record, with secrets masked in every string value; `time` is
    ISO 8601 in UTC, which log collectors parse without guessing a zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: redact(value) if isinstance(value, str) else value
                for key, value in super().process_log_record(log_data).items()}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (a worker process or a test
    runner may replace it after logging was configured)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return RedactingJsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMED, json_ensure_ascii=False)
    return RedactingTextFormatter(TEXT_FORMAT)


def configure_logging(settings: Settings | None = None, stream: IO[str] | None = None) -> logging.Handler:
    """Send log records to stderr (or `stream`) in HERALD_LOG_FORMAT, herald's at HERALD_LOG_LEVEL.

    One handler on the root logger, so the libraries' warnings share the format. It replaces
    the handler an earlier call installed and any root handler writing to stderr (dramatiq's
    and periodiq's own, which would print each line a second time); other handlers (a file an
    operator added, a test runner's capture) are kept. Returns the handler installed.
    """
    settings = settings or get_settings()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(make_formatter(settings.log_format))
    handler.herald = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "herald", False) or _writes_to_stderr(old):
            root.removeHandler(old)
    root.addHandler(handler)
    logging.getLogger("herald").setLevel(settings.log_level.upper())
    # pika logs each failed connection to RabbitMQ at ERROR, seven lines with a traceback; the
    # exception it then raises is what herald reports, in one sentence.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return handler


def _writes_to_stderr(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)
