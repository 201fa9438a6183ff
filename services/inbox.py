"""The demo's inbox: what `herald demo`'s local SMTP server and Telegram stand-in captured.

`herald/capture.py` writes every message under the demo directory: e-mail to a Maildir
(`mail/`, readable by any mail client), each Telegram document to its own folder
(`telegram/NNNNNN/`, the file beside a `meta.json`). These functions read them back as
plain records for the admin's Inbox page, parsing e-mail with the standard library.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from models.errors import NotFound

MAIL_DIR = "mail"          # a Maildir: new/, cur/, tmp/
TELEGRAM_DIR = "telegram"  # one folder per document: meta.json and the file
META = "meta.json"
EMAIL, TELEGRAM = "e-mail", "Telegram"
_TELEGRAM_ID = re.compile(r"telegram/(\d{1,9})")
_MAIL_KEY = re.compile(r"[\w.\\-]{1,200}")  # mailbox.Maildir's names; never a "/"


@dataclass(frozen=True)
class Attachment:
    """A file as the recipient got it."""

    filename: str
    media_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class MessageSummary:
    """One line of the inbox: where it went, what it says, when, which files it carries."""

    id: str                       # "mail/<maildir key>" or "telegram/<number>"
    channel: str                  # EMAIL or TELEGRAM
    to: str
    subject: str
    received_at: datetime         # aware UTC
    attachments: tuple[str, ...]  # file names


@dataclass(frozen=True)
class Message:
    """One captured message, as a mail client (or a Telegram chat) shows it."""

    id: str
    channel: str
    sender: str
    to: str
    subject: str
    received_at: datetime
    text: str | None              # the text/plain body, or the Telegram caption
    html: str | None              # the text/html body
    attachments: tuple[Attachment, ...]


def list_messages(directory: Path, limit: int = 200) -> list[MessageSummary]:
    """The newest `limit` captured e-mails and Telegram documents, newest first."""
    found = [*_mail_summaries(Path(directory) / MAIL_DIR, limit),
             *_telegram_summaries(Path(directory) / TELEGRAM_DIR, limit)]
    found.sort(key=lambda m: (m.received_at, m.id), reverse=True)
    return found[:limit]


def read_message(directory: Path, message_id: str) -> Message:
    """The whole message `message_id` (an id from `list_messages`) with its attachments."""
    directory = Path(directory)
    if message_id.startswith(f"{MAIL_DIR}/"):
        path = _mail_file(directory / MAIL_DIR, message_id.split("/", 1)[1])
        if path is None:
            raise _not_found(message_id)
        return _mail_message(message_id, path.read_bytes(), path)
    match = _TELEGRAM_ID.fullmatch(message_id)
    folder = directory / TELEGRAM_DIR / match.group(1) if match else None
    if folder is None or not (folder / META).is_file():
        raise _not_found(message_id)
    meta = _telegram_meta(folder)
    document = Attachment(meta["filename"], meta["media_type"],
                          (folder / meta["stored_as"]).read_bytes())
    return Message(message_id, TELEGRAM, "herald's Telegram bot", f"chat {meta['chat_id']}",
                   _first_line(meta["caption"]) or meta["filename"],
                   datetime.fromisoformat(meta["received_at"]), meta["caption"], None, (document,))


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"No captured message {message_id!r}; pick one from the inbox list.")


def _mail_file(maildir: Path, key: str) -> Path | None:
    """The file behind a Maildir key: new/KEY, or cur/KEY:2,FLAGS once a client has read it."""
    if not _MAIL_KEY.fullmatch(key):
        return None
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            for path in folder.iterdir():
                if _maildir_key(path) == key:
                    return path
    return None


def _maildir_key(path: Path) -> str:
    return path.name.split(":", 1)[0]


def _mail_summaries(maildir: Path, limit: int) -> list[MessageSummary]:
    if not (maildir / "new").is_dir():
        return []
    files = [(path.stat().st_mtime_ns, path) for sub in ("new", "cur")
             for path in (maildir / sub).iterdir() if not path.name.startswith(".")]
    files.sort(reverse=True)  # newest first: parse only the ones that will be shown
    return [_mail_summary(str(path), mtime) for mtime, path in files[:limit]]


@functools.lru_cache(maxsize=1024)
def _mail_summary(path: str, mtime_ns: int) -> MessageSummary:
    """Parsed once per file version: the page reruns on every click."""
    message = _mail_message(f"{MAIL_DIR}/{_maildir_key(Path(path))}", Path(path).read_bytes(), Path(path))
    return MessageSummary(message.id, EMAIL, message.to, message.subject, message.received_at,
                          tuple(a.filename for a in message.attachments))


def _mail_message(message_id: str, raw: bytes, path: Path) -> Message:
    mail: EmailMessage = message_from_bytes(raw, policy=policy.default)
    bodies = {kind: mail.get_body((kind,)) for kind in ("plain", "html")}
    attachments = tuple(Attachment(part.get_filename() or "attachment", part.get_content_type(),
                                   part.get_payload(decode=True) or b"")
                        for part in mail.iter_attachments())
    return Message(message_id, EMAIL, str(mail["From"] or ""),
                   str(mail["Delivered-To"] or mail["To"] or ""), str(mail["Subject"] or ""),
                   _sent_at(mail, path),
                   *(body.get_content() if body is not None else None for body in bodies.values()),
                   attachments)


def _sent_at(mail: EmailMessage, path: Path) -> datetime:
    """The Date header (a "-0000" zone is UTC, RFC 5322), else when the file was written."""
    try:
        moment = parsedate_to_datetime(str(mail["Date"]))
    except (TypeError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _telegram_summaries(root: Path, limit: int) -> list[MessageSummary]:
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.iterdir() if p.name.isdigit() and (p / META).is_file()),
                     key=lambda p: int(p.name), reverse=True)[:limit]
    summaries = []
    for folder in folders:
        meta = _telegram_meta(folder)
        summaries.append(MessageSummary(
            f"{TELEGRAM_DIR}/{folder.name}", TELEGRAM, f"chat {meta['chat_id']}",
            _first_line(meta["caption"]) or meta["filename"],
            datetime.fromisoformat(meta["received_at"]), (meta["filename"],)))
    return summaries


def _telegram_meta(folder: Path) -> dict:
    return json.loads((folder / META).read_text(encoding="utf-8"))


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]
