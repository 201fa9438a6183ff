"""E-mail through yagmail: one SMTP connection per run, one message per recipient.

yagmail builds the MIME message and opens the connection (implicit TLS on 465
or with MAIL_SMTP_SECURE, STARTTLS on 587, a plain relay elsewhere). Around it,
the traps in ENVIRONMENT.md: yagmail's `send()` swallows disconnects and opens a
connection per call, so messages go through `client.smtp.sendmail` on one
connection; a login name without "@" would get "@gmail.com" appended, so it is
passed as a one-entry dict; a missing password would prompt, so it never is.
"""

from __future__ import annotations

import io
import re
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email import policy
from email.utils import parseaddr

import jinja2
import yagmail
from yagmail.message import prepare_message

from delivery.base import DeliveryError, Letter, PartSent, Touch
from models.settings import Settings

_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("delivery", "templates"),
                                autoescape=jinja2.select_autoescape(["html", "j2"]),
                                trim_blocks=True, lstrip_blocks=True)
_TEXT_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("delivery", "templates"),
                                     autoescape=False, trim_blocks=True, lstrip_blocks=True)


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
        return DeliveryError(f"{where} does not support what herald asked for ({exc}); on port 587 "
                             f"it must offer STARTTLS.", permanent=True, channel_wide=True)
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


class MailSender:
    """An open SMTP channel for one run; connects on the first send, reconnects after a drop."""

    def __init__(self, settings: Settings) -> None:
        if not settings.mail_smtp_host or not settings.mail_from:
            missing = "MAIL_SMTP_HOST" if not settings.mail_smtp_host else "MAIL_FROM"
            raise DeliveryError(f"{missing} is not set; set MAIL_SMTP_HOST and MAIL_FROM to send "
                                f"e-mail.", permanent=True, channel_wide=True)
        if settings.mail_smtp_user and settings.mail_smtp_pass is None:
            raise DeliveryError("MAIL_SMTP_USER is set without MAIL_SMTP_PASS; set both, or "
                                "neither for a relay without login.", permanent=True,
                                channel_wide=True)
        self.settings = settings
        self.from_name, self.from_addr = parseaddr(settings.mail_from)
        self.where = f"{settings.mail_smtp_host}:{settings.mail_smtp_port}"
        self._client: yagmail.SMTP | None = None
        self._bodies: dict[int, bytes] = {}

    def _connect(self) -> yagmail.SMTP:
        s = self.settings
        implicit_tls = s.mail_smtp_secure or s.mail_smtp_port == 465
        context = ssl.create_default_context()
        login = s.mail_smtp_user or self.from_addr
        client = yagmail.SMTP(
            user={login: login}, password=s.mail_smtp_pass.get_secret_value() if s.mail_smtp_pass else "",
            host=s.mail_smtp_host, port=s.mail_smtp_port, smtp_ssl=implicit_tls,
            smtp_starttls={"context": context} if s.mail_smtp_port == 587 and not implicit_tls else False,
            smtp_skip_login=not s.mail_smtp_user, soft_email_validation=False,
            timeout=s.send_timeout_seconds, **({"context": context} if implicit_tls else {}),
        )
        client.login()
        return client

    def _body(self, letter: Letter) -> bytes:
        """Everything but To and Message-ID, serialised once per run and shared by every recipient."""
        body = self._bodies.get(letter.run_id)
        if body is None:
            html = _TEMPLATES.get_template("email.html.j2").render(letter=letter)
            files = []
            for attachment in letter.attachments:
                handle = io.BytesIO(attachment.content)
                handle.name = attachment.filename
                files.append(handle)
            message = prepare_message(
                self.from_addr, self.from_name or letter.tenant, {"recipients": [], "To": "-"},
                letter.subject, [html.replace("\n", " ")], files, None, "utf-8",
                prettify_html=False, message_id="-")
            # yagmail's plain-text part is the HTML itself; give text readers real text.
            plain = message.get_payload(0).get_payload(0)
            plain.set_payload(_TEXT_TEMPLATES.get_template("email.txt.j2").render(letter=letter),
                              "utf-8")
            for part in message.get_payload()[1:]:  # attachments: CSV text is UTF-8, say so
                if part.get_content_maintype() == "text":
                    part.set_param("charset", "utf-8")
            del message["To"], message["Message-ID"]
            body = self._bodies[letter.run_id] = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
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
        data = headers + self._body(letter)
        if self._client is None:
            try:
                self._client = self._connect()
            except Exception as exc:  # whatever stops the connection stops every recipient
                error = classify(exc, self.where)
                error.channel_wide = True
                raise error from None
        try:
            self._client.smtp.sendmail(self.from_addr, [recipient], data,
                                       mail_options=["SMTPUTF8"] if utf8 else ())
        except smtplib.SMTPNotSupportedError:
            if not utf8:
                raise
            raise DeliveryError(f"the SMTP server does not accept non-ASCII addresses (SMTPUTF8), "
                                f"which {recipient} needs.", permanent=True) from None
        except Exception as exc:
            error = classify(exc, self.where)
            if error.channel_wide:
                self.close()
            raise error from None
        return mid

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
