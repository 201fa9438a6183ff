"""`herald demo`'s stand-ins for the outside world, so nothing leaves the machine: an SMTP
server that keeps every message it accepts in a Maildir, and an HTTP server answering the
Telegram Bot API's `sendDocument` that keeps every document it gets.

Both write under the demo directory in the layout `services/inbox.py` reads (the admin's
Inbox runs in another process); a message is written whole or not at all.
"""

from __future__ import annotations

import json
import logging
import mailbox
import mimetypes
import re
import socket
import threading
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

from services.inbox import MAIL_DIR, META, TELEGRAM_DIR

log = logging.getLogger("herald.capture")
LOCALHOST = "127.0.0.1"
TELEGRAM_MAX_BYTES = 50 * 1024 * 1024  # the Bot API's own limit for a document


def free_port() -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` (as servers bind: SO_REUSEADDR, so connections
    closing in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


class MailCapture:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that files one copy per recipient in
    `directory/mail`, headed by Delivered-To and Return-Path as a mail server's local
    delivery would; no TLS, no login."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.path = Path(directory) / MAIL_DIR
        self.maildir = mailbox.Maildir(self.path, factory=None, create=True)
        self.port = port or free_port()
        self._controller: Controller | None = None
        self._lock = threading.Lock()

    def start(self) -> MailCapture:
        self._controller = Controller(self, hostname=LOCALHOST, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
        content = envelope.original_content or envelope.content
        subject = message_from_bytes(content, policy=policy.default)["Subject"]
        for recipient in envelope.rcpt_tos:
            headers = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {recipient}\r\n"
            with self._lock:  # Maildir names carry a per-process counter
                key = self.maildir.add(headers.encode() + content)
            log.info("captured e-mail to %s: %s (%s)", recipient, subject,
                     self.path / "new" / key)
        return "250 Message accepted for delivery"


class TelegramCapture:
    """An HTTP server on 127.0.0.1 that answers `sendDocument` for `token` as the Bot API
    does, filing each document in `directory/telegram/NNNNNN/`. Another token is
    401 Unauthorized and another method 404 Not Found, as Telegram answers them."""

    def __init__(self, directory: Path, token: str, port: int = 0) -> None:
        self.root = Path(directory) / TELEGRAM_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self._lock = threading.Lock()
        numbers = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()]
        self._last = max(numbers, default=0)
        self._server = ThreadingHTTPServer((LOCALHOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="telegram-capture", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL for TELEGRAM_API_URL."""
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> TelegramCapture:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def answer(self, target: str, content_type: str, body: bytes) -> tuple[int, dict]:
        """The Bot API's answer to one request (fields in the query string or the form, as
        Telegram takes them); a sent document is on disk before it returns."""
        url = urlsplit(target)
        path, method = url.path, url.path.rsplit("/", 1)[-1]
        if not path.startswith(f"/bot{self.token}/"):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method != "sendDocument":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        fields, files = _form(content_type, body)
        fields.update({name: values[0] for name, values in parse_qs(url.query).items()})
        if "document" not in files or not re.fullmatch(r"-?\d+", fields.get("chat_id", "")):
            return 400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: there is no document in the request"}
        filename, content = files["document"]
        chat_id, caption = int(fields["chat_id"]), fields.get("caption")
        number, now = self._file(chat_id, filename, content, caption)
        log.info("captured Telegram document for chat %s: %s (%s/%06d)", chat_id, filename,
                 self.root, number)
        return 200, {"ok": True, "result": {
            "message_id": number, "date": int(now.timestamp()),
            "chat": {"id": chat_id, "type": "private"}, "caption": caption,
            "document": {"file_id": f"demo-{number}", "file_unique_id": f"demo-{number}",
                         "file_name": filename, "file_size": len(content)}}}

    def _file(self, chat_id: int, filename: str, content: bytes,
              caption: str | None) -> tuple[int, datetime]:
        """Write the document and its meta.json to a hidden folder, then rename it into place."""
        now = datetime.now(UTC)
        stored_as = _safe_name(filename)
        with self._lock:
            self._last += 1
            number = self._last
        staging = self.root / f".{number:06d}"
        staging.mkdir()
        (staging / stored_as).write_bytes(content)
        meta = {"message_id": number, "chat_id": chat_id, "caption": caption,
                "filename": filename, "stored_as": stored_as,
                "media_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
                "size": len(content), "received_at": now.isoformat()}
        (staging / META).write_text(json.dumps(meta, ensure_ascii=False, indent=2),
                                    encoding="utf-8")
        staging.rename(self.root / f"{number:06d}")
        return number, now

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's hook
                length = int(self.headers.get("Content-Length") or 0)
                if length > TELEGRAM_MAX_BYTES + 64 * 1024:
                    status, answer = 413, {"ok": False, "error_code": 413,
                                           "description": "Request Entity Too Large"}
                else:
                    status, answer = capture.answer(self.path, self.headers.get("Content-Type", ""),
                                                    self.rfile.read(length))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815 - the Bot API takes either

            def log_message(self, *args) -> None:  # the paths carry the bot token
                pass

        return Handler


def _form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body: its text fields, and its files as (filename, content)."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not content_type.startswith("multipart/form-data"):
        return fields, files
    parts = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                               policy=policy.default)
    for part in parts.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            files[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
        else:
            fields[name] = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return fields, files


def _safe_name(filename: str) -> str:
    """The file name without folders or characters a file system might refuse."""
    name = re.sub(r"[^\w.\- ]", "_", Path(filename.replace("\\", "/")).name).strip(" .")
    if not name:
        return "document"
    return f"document-{name}" if name == META else name  # never over the meta file
