"""What every channel is given and what it may raise.

A channel sends one `Letter` (the same for every recipient of a run) to one
recipient at a time over a connection it keeps open for the whole run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from models.base import Format


@dataclass(frozen=True)
class Attachment:
    """One document, as a file the deliver stage spooled for this run (see `document_path`).

    Channels read it from disk when they send, so no document is held whole in memory
    longer than its channel needs it.
    """

    format: Format
    filename: str
    media_type: str
    path: Path                    # named `filename`, inside the deliver stage's directory
    rows: int | None = None       # CSV: data rows, for the summary

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def document_path(directory: Path, filename: str) -> Path:
    """A new path named `filename` in a folder of its own under `directory`, so that
    documents never collide and a channel can take the file's name as the document's."""
    return Path(tempfile.mkdtemp(dir=directory)) / Path(filename).name


@dataclass(frozen=True)
class Letter:
    """One run's message: the subject, a short summary and the documents."""

    run_id: int
    subject: str
    title: str
    tenant: str
    period: str                    # the slot's local date, e.g. 2026-11-22
    generated_at: str              # local time with its zone, e.g. 2026-11-22 09:00 CET
    summary: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment, ...]
    notes: tuple[str, ...] = field(default=())   # e.g. "the CSV was zipped to fit"
    locale: str = "en"             # the report's: how numbers in the summary and notes read
    # {e-mail recipient: their one-click unsubscribe URL}, sent as List-Unsubscribe (RFC 8058)
    unsubscribe: Mapping[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """A send that did not reach its recipient.

    `permanent` errors are recorded without retry; `channel_wide` ones (the server is
    down, the credentials are wrong) apply to every recipient on the channel, not just
    this one. `retry_after` is the provider's own wait, in seconds.
    """

    def __init__(self, message: str, *, permanent: bool, channel_wide: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.channel_wide = channel_wide
        self.retry_after = retry_after


# Called by a channel before each part it sends, so the delivery's lease stays ahead of it.
Touch = Callable[[], None]
# Called by a channel after each part that reached the recipient: (format, provider id).
PartSent = Callable[[str, str], None]


class Sender(Protocol):
    """An open channel: `send` returns the provider's message id, or raises DeliveryError."""

    def send(self, delivery_id: int, recipient: str, letter: Letter,
             sent_parts: Mapping[str, str], touch: Touch, part_sent: PartSent) -> str: ...

    def close(self) -> None: ...
