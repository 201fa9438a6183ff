"""Real servers the delivery tests send to: an SMTP server (aiosmtpd) and an HTTP server
that answers the Telegram Bot API's sendDocument the way Telegram does.

Both only record and answer; every decision (what to retry, what is permanent) is
herald's. The Bot API server is the one stand-in: Telegram itself cannot run here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mail:
    rcpt_tos: list[str]
    raw: bytes                     # the message as it came over the wire
    tls: str | None = None         # the session's TLS version when it arrived, e.g. "TLSv1.3"

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The message parsed, when first asked for: a benchmark's thousands of messages are
        kept unparsed, so the server standing in for a mail relay costs the machine little."""
        return message_from_bytes(self.raw, policy=policy.default)

    def header_lines(self) -> list[bytes]:
        """The raw header section, one physical line each (a folded header takes several)."""
        return self.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")

    @property
    def message_id(self) -> str:
        """From the header section alone (the body stays unparsed)."""
        head = self.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return message_from_bytes(head, policy=policy.default)["Message-ID"]

    def attachments(self) -> dict[str, bytes]:
        return {part.get_filename(): part.get_payload(decode=True) for part in self.message.iter_attachments()}

    def attachment_types(self) -> dict[str, str]:
        return {part.get_filename(): f"{part.get_content_type()}; charset={part.get_content_charset()}"
                for part in self.message.iter_attachments()}

    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()

    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()


@dataclass
class Login:
    login: str
    password: str
    tls: str | None                # the session's TLS version at AUTH; None: in clear text


def tls_version(server) -> str | None:
    """The TLS version of an aiosmtpd session: implicit TLS or after STARTTLS; None in clear text."""
    ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
    return ssl_object.version() if ssl_object is not None else None


@dataclass
class _Stall:
    recipient: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class MailSink:
    """aiosmtpd on 127.0.0.1 that keeps every message it accepted.

    `refuse[address] = (550, "5.1.1 no such user")` refuses a recipient at RCPT;
    `stall_after_accepting(address)` keeps the message but holds back the 250 reply
    until released (the worst moment for a worker to die). `accounts` ({login: password})
    makes it require AUTH, recording each attempt in `logins`; `options` go to aiosmtpd
    (`ssl_context=` implicit TLS, `tls_context=` STARTTLS, `auth_require_tls=`, ...).
    """

    def __init__(self, port: int | None = None, accounts: dict[str, str] | None = None,
                 **options) -> None:
        self.port = port or free_port()
        self.mails: list[Mail] = []
        self.refuse: dict[str, tuple[int, str]] = {}
        self.rcpt_attempts: Counter[str] = Counter()
        self.connections = 0
        self.accounts = accounts or {}
        self.logins: list[Login] = []
        if accounts is not None:
            options = {"authenticator": self._authenticate, "auth_required": True, **options}
        self._options = options
        self._stall: _Stall | None = None
        self._controller: Controller | None = None
        self._lock = threading.Lock()

    def start(self) -> MailSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      data_size_limit=200 * 1024 * 1024, **self._options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            if self._stall:
                self._stall.release.set()
            self._controller.stop()
            self._controller = None

    def stall_after_accepting(self, address: str) -> _Stall:
        self._stall = _Stall(address)
        return self._stall

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if address in m.rcpt_tos]

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append(Login(login, password, tls_version(server)))
        return AuthResult(success=self.accounts.get(login) == password)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt_attempts[address] += 1
        if address in self.refuse:
            code, text = self.refuse[address]
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self._lock:
            self.mails.append(Mail(list(envelope.rcpt_tos), envelope.original_content, tls_version(server)))
        stall = self._stall
        if stall and stall.recipient in envelope.rcpt_tos and not stall.reached.is_set():
            stall.reached.set()
            await asyncio.get_running_loop().run_in_executor(None, stall.release.wait, 120)
        return "250 Message accepted for delivery"


@dataclass
class Document:
    chat_id: str
    filename: str
    content: bytes
    caption: str | None
    message_id: int


class BotApi:
    """A local HTTP server answering `sendDocument` like the Bot API.

    `errors[chat_id] = (400, "Bad Request: chat not found")` answers every send to that
    chat with that error. `script[chat_id]` answers the chat's next sends in order:
    "ok" accepts, `502` fails with that status, `(429, 2)` asks to retry after 2 s.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.documents: list[Document] = []
        self.requests: Counter[str] = Counter()
        self.rejected = 0  # requests for another token
        self.request_times: dict[str, list[float]] = {}
        self.errors: dict[str, tuple[int, str]] = {}
        self.script: dict[str, list[str | int | tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> BotApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def to(self, chat_id: str) -> list[Document]:
        with self._lock:
            return [d for d in self.documents if d.chat_id == chat_id]

    def _answer(self, path: str, query: dict[str, list[str]], body: bytes, content_type: str) -> tuple[int, dict]:
        if path != f"/bot{self.token}/sendDocument":
            self.rejected += 1
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        parts = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                                   policy=policy.default)
        fields = {k: v[0] for k, v in query.items()}
        files = {}
        for part in parts.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                files[name] = (part.get_filename(), part.get_payload(decode=True))
            else:
                fields[name] = part.get_content()
        chat = str(fields.get("chat_id"))
        with self._lock:
            self.requests[chat] += 1
            self.request_times.setdefault(chat, []).append(time.monotonic())
            if chat in self.errors:
                code, text = self.errors[chat]
                return code, {"ok": False, "error_code": code, "description": text}
            step = self.script[chat].pop(0) if self.script.get(chat) else "ok"
            if isinstance(step, tuple):
                wait = step[1]
                return 429, {"ok": False, "error_code": 429,
                             "description": f"Too Many Requests: retry after {wait}",
                             "parameters": {"retry_after": wait}}
            if step != "ok":
                return step, {"ok": False, "error_code": step, "description": "Bad Gateway"}
            filename, content = files["document"]
            message_id = len(self.documents) + 1
            self.documents.append(Document(chat, filename, content, fields.get("caption"), message_id))
        return 200, {"ok": True, "result": {
            "message_id": message_id, "date": int(time.time()),
            "chat": {"id": int(chat), "type": "private"},
            "document": {"file_id": f"f{message_id}", "file_unique_id": f"u{message_id}",
                         "file_name": filename, "file_size": len(content)}}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = api._answer(url.path, parse_qs(url.query), body,
                                             self.headers.get("Content-Type", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        return Handler
