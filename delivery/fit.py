"""Fit a run's documents into a channel's size limit, or say exactly why they cannot.

A message is never sent without its documents: a CSV over the limit is zipped,
and what still does not fit fails the delivery with the sizes and the limit.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

from delivery.base import Attachment, DeliveryError, document_path
from models.base import Channel, Format
from models.settings import Settings
from renderers.csv_export import ZIP_MEDIA_TYPE

# Headers, the HTML and plain-text bodies and MIME boundaries of one e-mail.
EMAIL_OVERHEAD_BYTES = 64 * 1024


def encoded_size(size: int) -> int:
    """Bytes on the wire once base64-encoded in 76-character lines with CRLF."""
    encoded = 4 * ((size + 2) // 3)
    return encoded + 2 * ((encoded + 75) // 76)


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class Zipper:
    """Zips each document once per run, file to file in `directory`, so every channel
    sends the same archive and no document is held in memory to zip it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._done: dict[str, Attachment] = {}

    def __call__(self, attachment: Attachment) -> Attachment:
        if attachment.media_type == ZIP_MEDIA_TYPE:
            return attachment
        if attachment.filename not in self._done:
            filename = attachment.filename + ".zip"
            target = document_path(self.directory, filename)
            # compressed the way the CSV renderer zips a large export
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                archive.write(attachment.path, arcname=attachment.filename)
            self._done[attachment.filename] = replace(attachment, filename=filename,
                                                      media_type=ZIP_MEDIA_TYPE, path=target)
        return self._done[attachment.filename]

    def csvs(self, attachments: tuple[Attachment, ...], only: set[int] | None = None) -> tuple[Attachment, ...]:
        return tuple(self(a) if a.format == Format.CSV and (only is None or i in only) else a
                     for i, a in enumerate(attachments))


def _describe(attachments: tuple[Attachment, ...], size=lambda a: a.size) -> str:
    return ", ".join(f"{a.filename} {megabytes(size(a))}" for a in attachments)


def fit_email(attachments: tuple[Attachment, ...], limit: int, zipper: Zipper) -> tuple[Attachment, ...]:
    """All documents in one message of at most `limit` bytes, counting base64 growth."""
    def total(atts: tuple[Attachment, ...]) -> int:
        return EMAIL_OVERHEAD_BYTES + sum(encoded_size(a.size) for a in atts)

    if total(attachments) > limit:
        attachments = zipper.csvs(attachments)
    if total(attachments) > limit:
        raise DeliveryError(
            f"The documents come to {megabytes(total(attachments))} once encoded for e-mail "
            f"({_describe(attachments, lambda a: encoded_size(a.size))}), over the "
            f"{megabytes(limit)} limit (HERALD_MAIL_MAX_BYTES); narrow the report's query or "
            f"raise the limit if your mail server accepts more.",
            permanent=True, channel_wide=True)
    return attachments


def fit_telegram(attachments: tuple[Attachment, ...], limit: int, zipper: Zipper) -> tuple[Attachment, ...]:
    """Each document at most `limit` bytes (the Bot API's 50 MB per file)."""
    over = {i for i, a in enumerate(attachments) if a.size > limit}
    attachments = zipper.csvs(attachments, over)
    too_big = [a for a in attachments if a.size > limit]
    if too_big:
        raise DeliveryError(
            f"{_describe(tuple(too_big))} is over Telegram's {megabytes(limit)} limit per "
            f"document{' even zipped' if any(a.format == Format.CSV for a in too_big) else ''}; "
            f"narrow the report's query or send it by e-mail.",
            permanent=True, channel_wide=True)
    return attachments


def fit(channel: Channel, attachments: tuple[Attachment, ...], settings: Settings,
        zipper: Zipper) -> tuple[Attachment, ...]:
    if channel == Channel.EMAIL:
        return fit_email(attachments, settings.mail_max_bytes, zipper)
    return fit_telegram(attachments, settings.telegram_max_bytes, zipper)
