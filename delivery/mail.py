"""E-mail over one SMTP connection per run (smtplib), one message per recipient.

TLS: implicit on port 465 or with MAIL_SMTP_SECURE; on any other port STARTTLS
whenever the server offers it. The certificate is always verified (against
MAIL_SMTP_CA_FILE when set), and MAIL_SMTP_PASS is never sent unencrypted unless
MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN says so.

The message is built with the standard library's `EmailMessage` (see `compose`): a
plain-text and an HTML part saying the same things, each labelled with the encoding
it is written in, then the documents read from their files.
"""

from __future__ import annotations

import functools
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum

import jinja2

from delivery.base import Attachment, DeliveryError, Letter, PartSent, Touch
from models.settings import Settings
from models.text import plain_file_name

_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("delivery", "templates"),
                                autoescape=jinja2.select_autoescape(["html", "j2"]),
                                trim_blocks=True, lstrip_blocks=True)
_TEXT_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("delivery", "templates"),
                                     autoescape=False, trim_blocks=True, lstrip_blocks=True)
# Lines end in CRLF on the wire; headers that need it are RFC 2047 encoded (SMTPUTF8 is per recipient).
_POLICY = policy.SMTP


class Encryption(StrEnum):
    """How the SMTP connection is encrypted before anything else is said on it."""

    IMPLICIT_TLS = "implicit TLS"
    STARTTLS_WHEN_OFFERED = "STARTTLS when offered"


def encryption(port: int, secure: bool) -> Encryption:
    """Implicit TLS on 465 or with MAIL_SMTP_SECURE; elsewhere (587, 25, a local relay) STARTTLS
    whenever the server offers it."""
    return Encryption.IMPLICIT_TLS if secure or port == 465 else Encryption.STARTTLS_WHEN_OFFERED


def message_id(run_id: int, delivery_id: int, sender: str) -> str:
    """The same id for every attempt of one delivery, so a resend is recognisable."""
    domain = sender.rpartition("@")[2] or "herald.localhost"
    return f"<herald.run-{run_id}.delivery-{delivery_id}@{domain}>"


def classify(exc: BaseException, where: str) -> DeliveryError:
    """An SMTP failure as a DeliveryError: 5xx permanent, 4xx and network failures transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return _reply_error("refused the recipient", code, reply)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(f"{where} rejected MAIL_SMTP_USER/MAIL_SMTP_PASS ({exc.smtp_code}); "
                             f"check the credentials.", permanent=True, channel_wide=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error("refused the message", exc.smtp_code, exc.smtp_error,
                            channel_wide=isinstance(exc, smtplib.SMTPSenderRefused))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"{where} does not support what herald asked for ({exc}).",
                             permanent=True, channel_wide=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"the SMTP server at {where} presented a certificate herald cannot verify "
                             f"({exc.verify_message or exc.reason}); set MAIL_SMTP_CA_FILE to the CA "
                             f"that signed it, or fix the server's certificate.",
                             permanent=True, channel_wide=True)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"TLS with {where} failed ({exc.reason or exc}); check MAIL_SMTP_PORT "
                             f"and MAIL_SMTP_SECURE.", permanent=True, channel_wide=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"{where} closed the connection ({exc or 'no reason given'}).",
                             permanent=False, channel_wide=True)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return DeliveryError(f"{where} did not answer in time.", permanent=False, channel_wide=True)
    if isinstance(exc, ConnectionRefusedError):
        return DeliveryError(f"{where} refused the connection (is the SMTP server up?).",
                             permanent=False, channel_wide=True)
    if isinstance(exc, OSError):
        return DeliveryError(f"could not reach {where}: {exc.strerror or exc}.", permanent=False,
                             channel_wide=True)
    raise exc


def _reply_error(what: str, code: int, reply: bytes | str, channel_wide: bool = False) -> DeliveryError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    text = re.sub(r"\s+", " ", text).strip()
    return DeliveryError(f"the SMTP server {what}: {code} {text}", permanent=code >= 500,
                         channel_wide=channel_wide)


# The ending each document's media type gives its attachment's name.
EXTENSIONS = {"text/csv": ".csv", "application/zip": ".zip", "application/pdf": ".pdf",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx"}


# Runs that share a render (`pipeline.sharing`) send the same letter: its body is serialised
# once per process and kept for a minute (its Date header says when it was written).
BODY_KEPT_S = 60.0
BODIES_KEPT = 32
_bodies: dict[tuple, tuple[float, bytes]] = {}
_bodies_lock = threading.Lock()


def body_key(letter: Letter, from_name: str, from_addr: str) -> tuple:
    """What a letter's body is made of: everything but the run's id and the recipients, with
    each document by its file's identity (the runs sharing a render link the same file)."""
    files = []
    for a in letter.attachments:
        found = a.path.stat()
        files.append((a.format, a.filename, a.media_type, a.rows, found.st_dev, found.st_ino,
                      found.st_size, found.st_mtime_ns))
    return (from_name, from_addr, letter.subject, letter.title, letter.tenant, letter.period,
            letter.generated_at, letter.summary, letter.notes, letter.locale, tuple(files))


def compose(letter: Letter, sender: Address) -> EmailMessage:
    """The run's message without To and Message-ID: text and HTML alternatives, then each
    document as a base64 attachment.

    The text parts are quoted-printable: 7-bit safe for any server, and still readable in
    the raw message. A document is read whole once, as the message must be serialised
    whole for `sendmail`; `delivery.fit` has bounded the total beforehand.
    """
    message = EmailMessage(policy=_POLICY)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["From"] = sender
    message["Subject"] = letter.subject
    message.set_content(_TEXT_TEMPLATES.get_template("email.txt.j2").render(letter=letter),
                        subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(_TEMPLATES.get_template("email.html.j2").render(letter=letter),
                            subtype="html", charset="utf-8", cte="quoted-printable")
    for attachment in letter.attachments:
        _attach(message, attachment)
    return message


def _attach(message: EmailMessage, attachment: Attachment) -> None:
    """The document under its own name, made plain and ending as its media type says, and that
    media type; a text document (CSV) says it is UTF-8, and is base64 like the rest so that
    its bytes, CRLFs included, arrive unchanged."""
    maintype, subtype = attachment.media_type.split("/", 1)
    params = {"charset": "utf-8"} if maintype == "text" else {}
    filename = plain_file_name(attachment.filename, EXTENSIONS.get(attachment.media_type, ""))
    message.add_attachment(attachment.path.read_bytes(), maintype, subtype,
                           filename=filename, params=params)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):  # already gone: nothing left to say goodbye to
        client.close()


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying TLS context for `ca_file` (None: the system's CAs), made once per process:
    loading the CA bundle took a fifth of a run's CPU when each run made its own. A CA file
    rewritten in place is read again."""
    stamp = None
    if ca_file:
        try:
            found = os.stat(ca_file)
            stamp = (found.st_mtime_ns, found.st_size)
        except OSError:
            pass  # create_default_context says the file is missing, in its own words
    return _tls_context(ca_file, stamp)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None, _stamp: tuple[int, int] | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


# A worker thread keeps its SMTP session open between runs for a few seconds: a herd's runs,
# one after another, then skip the connection, the greeting, TLS and the login. A session
# found closed when it is taken up again is opened anew for that send (nothing was sent on
# it: the server closed it while it was idle).
IDLE_SESSION_S = 10.0
MESSAGES_PER_SESSION = 100  # relays cap a session's messages; well under their usual limits
_idle = threading.local()   # .session: (the settings it was opened with, client, idle since, sent)


def _session_key(s: Settings) -> tuple:
    """What an SMTP session was opened with: another value needs another session."""
    return (s.mail_smtp_host, s.mail_smtp_port, s.mail_smtp_secure, s.mail_smtp_user,
            s.mail_smtp_pass.get_secret_value() if s.mail_smtp_pass else None, s.mail_smtp_ca_file,
            s.mail_smtp_allow_plaintext_login, s.send_timeout_seconds)


class MailSender:
    """An open SMTP channel for one run; connects on the first send (or takes up the session
    this thread left open), reconnects after a drop."""

    def __init__(self, settings: Settings) -> None:
        unset = settings.channel_unset("email")
        if unset:
            raise DeliveryError(unset, permanent=True, channel_wide=True)
        self.settings = settings
        self.from_name, self.from_addr = parseaddr(settings.mail_from)
        self.where = f"{settings.mail_smtp_host}:{settings.mail_smtp_port}"
        self._client: smtplib.SMTP | None = None
        self._sent = 0          # messages on the current session
        self._taken_up = False  # the current session was left open by an earlier run

    def _take_up(self) -> smtplib.SMTP | None:
        """The session this thread left open with the same settings, if it is recent."""
        idle, _idle.session = getattr(_idle, "session", None), None
        if idle is None:
            return None
        key, client, since, sent = idle
        if key == _session_key(self.settings) and time.monotonic() - since < IDLE_SESSION_S:
            self._sent, self._taken_up = sent, True
            return client
        _quit(client)
        return None

    def _connect(self) -> smtplib.SMTP:
        """An open, greeted connection: encrypted wherever the server allows, logged in if asked."""
        s = self.settings
        context = tls_context(s.mail_smtp_ca_file)
        if encryption(s.mail_smtp_port, s.mail_smtp_secure) == Encryption.IMPLICIT_TLS:
            client = smtplib.SMTP_SSL(s.mail_smtp_host, s.mail_smtp_port, timeout=s.send_timeout_seconds,
                                      context=context)
        else:
            client = smtplib.SMTP(s.mail_smtp_host, s.mail_smtp_port, timeout=s.send_timeout_seconds)
        # A session carries many messages: without this, the end of each one can wait for the
        # server's delayed acknowledgement of the one before (40 ms on Linux).
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            client.ehlo_or_helo_if_needed()
            encrypted = isinstance(client, smtplib.SMTP_SSL)
            if not encrypted and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                encrypted = True
            if s.mail_smtp_user:
                self._login(client, encrypted)
        except BaseException:
            client.close()
            raise
        return client

    def _login(self, client: smtplib.SMTP, encrypted: bool) -> None:
        s = self.settings
        if not encrypted and not s.mail_smtp_allow_plaintext_login:
            raise DeliveryError(
                f"the SMTP server at {self.where} offers no TLS, and herald will not send "
                f"MAIL_SMTP_PASS in clear text; use port 465/587 with TLS, or set "
                f"MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN=true for a trusted local relay.",
                permanent=True, channel_wide=True)
        if not client.has_extn("auth"):
            raise DeliveryError(
                f"the SMTP server at {self.where} offers no login (SMTP AUTH); unset MAIL_SMTP_USER "
                f"and MAIL_SMTP_PASS for a relay without login.", permanent=True, channel_wide=True)
        client.login(s.mail_smtp_user, s.mail_smtp_pass.get_secret_value())

    def _body(self, letter: Letter) -> bytes:
        """Everything but To and Message-ID, serialised once and shared by every recipient of
        the run, and by the runs after it that send the same letter (`body_key`)."""
        key = body_key(letter, self.from_name, self.from_addr)
        with _bodies_lock:
            found = _bodies.get(key)
            if found is not None and time.monotonic() - found[0] < BODY_KEPT_S:
                return found[1]
        sender = Address(display_name=self.from_name or letter.tenant, addr_spec=self.from_addr)
        body = compose(letter, sender).as_bytes()
        with _bodies_lock:
            _bodies[key] = (time.monotonic(), body)
            while len(_bodies) > BODIES_KEPT:
                _bodies.pop(next(iter(_bodies)))
        return body

    def send(self, delivery_id: int, recipient: str, letter: Letter, sent_parts: Mapping[str, str],
             touch: Touch, part_sent: PartSent) -> str:
        mid = message_id(letter.run_id, delivery_id, self.from_addr)
        utf8 = not recipient.isascii()
        if utf8:
            fold = policy.SMTPUTF8.fold_binary
            headers = fold("To", recipient) + fold("Message-ID", mid)
        else:  # a validated address and our own id: nothing to fold or encode
            headers = f"To: {recipient}\r\nMessage-ID: {mid}\r\n".encode()
        if url := letter.unsubscribe.get(recipient):  # ASCII, one line (under 998 characters)
            headers += (f"List-Unsubscribe: <{url}>\r\n"
                        f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode()
        data = headers + self._body(letter)
        if self._client is None:
            self._client = self._take_up() or self._open()
        try:
            try:
                self._client.sendmail(self.from_addr, [recipient], data,
                                      mail_options=["SMTPUTF8"] if utf8 else ())
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not self._taken_up:
                    raise
                # The session left open was closed by the server while idle: a new one.
                _quit(self._client)
                self._client, self._taken_up, self._sent = self._open(), False, 0
                self._client.sendmail(self.from_addr, [recipient], data,
                                      mail_options=["SMTPUTF8"] if utf8 else ())
            self._taken_up = False
            self._sent += 1
        except smtplib.SMTPNotSupportedError:
            if not utf8:
                raise
            raise DeliveryError(f"the SMTP server does not accept non-ASCII addresses (SMTPUTF8), "
                                f"which {recipient} needs.", permanent=True) from None
        except Exception as exc:
            error = classify(exc, self.where)
            if error.channel_wide:
                self.discard()
            raise error from None
        return mid

    def _open(self) -> smtplib.SMTP:
        self._taken_up, self._sent = False, 0
        try:
            return self._connect()
        except DeliveryError:
            raise
        except Exception as exc:  # whatever stops the connection stops every recipient
            error = classify(exc, self.where)
            error.channel_wide = True
            raise error from None

    def close(self) -> None:
        """Leave the session open for this thread's next run (a recent one, not yet at its
        messages' limit), else say goodbye."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._sent < MESSAGES_PER_SESSION:
            earlier = getattr(_idle, "session", None)
            if earlier is not None:
                _quit(earlier[1])
            _idle.session = (_session_key(self.settings), client, time.monotonic(), self._sent)
            return
        _quit(client)

    def discard(self) -> None:
        """Close the session now (it failed): it is not left open."""
        client, self._client = self._client, None
        if client is not None:
            _quit(client)
