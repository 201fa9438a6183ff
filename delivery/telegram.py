"""Telegram through pyTelegramBotAPI: `sendDocument` per format, with a caption.

`TELEGRAM_API_URL` points telebot at a self-hosted Bot API server (its
`apihelper.API_URL` is process-wide, and so is the setting). A 429 is a transient
failure whose retry waits at least the `retry_after` Telegram asks for (in the
broker, not here); "chat not found" and "bot was blocked" are permanent. Each
document that arrived is recorded before the next is sent, so a retry sends only
what the chat has not got.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
import telebot
from telebot import apihelper
from telebot.types import InputFile

from delivery.base import Attachment, DeliveryError, Letter, PartSent, Touch
from models.settings import Settings

CAPTION_LIMIT = 1024
_PERMANENT_CHANNEL = {401: "Telegram rejected TELEGRAM_BOT_TOKEN (401 Unauthorized); check the token.",
                      404: "Telegram answered 404 for sendDocument; check TELEGRAM_BOT_TOKEN and "
                           "TELEGRAM_API_URL."}


def api_url_template(base: str | None) -> str | None:
    """telebot's URL template from TELEGRAM_API_URL (a base URL, or a template with {0} and {1})."""
    if not base or "{0}" in base:
        return base
    return base.rstrip("/") + "/bot{0}/{1}"


def caption(letter: Letter, attachment: Attachment, first: bool) -> str:
    if not first:
        rows = f", {attachment.rows:,} rows" if attachment.rows is not None else ""
        return f"{letter.title}: {attachment.filename}{rows}"
    lines = [f"{letter.title} ({letter.tenant})", f"Report for {letter.period}"]
    lines += [f"{label}: {value}" for label, value in letter.summary]
    lines += list(letter.notes)
    text = "\n".join(lines)
    return text if len(text) <= CAPTION_LIMIT else text[:CAPTION_LIMIT - 1] + "…"


def classify(exc: BaseException) -> DeliveryError:
    if isinstance(exc, apihelper.ApiTelegramException):
        code, text = exc.error_code, exc.description
        if code == 429:
            wait = _retry_after(exc)
            return DeliveryError(f"Telegram asked to wait {wait:g} s (429 Too Many Requests)",
                                 permanent=False, retry_after=wait)
        if code in _PERMANENT_CHANNEL:
            return DeliveryError(_PERMANENT_CHANNEL[code], permanent=True, channel_wide=True)
        return DeliveryError(f"Telegram refused the document: {code} {text}", permanent=code < 500)
    if isinstance(exc, apihelper.ApiHTTPException):
        code = exc.result.status_code
        return DeliveryError(f"the Telegram Bot API answered HTTP {code}", permanent=400 <= code < 500
                             and code not in (408, 429), channel_wide=code >= 500)
    if isinstance(exc, requests.Timeout):
        return DeliveryError("the Telegram Bot API did not answer in time.", permanent=False,
                             channel_wide=True)
    if isinstance(exc, requests.ConnectionError):
        return DeliveryError("could not reach the Telegram Bot API (connection failed).",
                             permanent=False, channel_wide=True)
    raise exc


def _retry_after(exc: apihelper.ApiTelegramException) -> float:
    return float((exc.result_json.get("parameters") or {}).get("retry_after", 1))


class TelegramSender:
    def __init__(self, settings: Settings) -> None:
        unset = settings.channel_unset("telegram")
        if unset:
            raise DeliveryError(unset, permanent=True, channel_wide=True)
        apihelper.API_URL = api_url_template(settings.telegram_api_url)
        apihelper.CONNECT_TIMEOUT = apihelper.READ_TIMEOUT = settings.send_timeout_seconds
        self.bot = telebot.TeleBot(settings.telegram_bot_token.get_secret_value(), threaded=False)

    def send(self, delivery_id: int, recipient: str, letter: Letter, sent_parts: Mapping[str, str],
             touch: Touch, part_sent: PartSent) -> str:
        ids = []
        for i, attachment in enumerate(letter.attachments):
            key = attachment.format.value
            if key not in sent_parts:
                message_id = self._send_document(recipient, attachment, caption(letter, attachment, i == 0),
                                                 touch)
                part_sent(key, message_id)
                ids.append(message_id)
            else:
                ids.append(sent_parts[key])
        return ",".join(ids)

    def _send_document(self, chat_id: str, attachment: Attachment, text: str, touch: Touch) -> str:
        touch()
        try:
            with attachment.path.open("rb") as handle:
                message = self.bot.send_document(
                    int(chat_id), InputFile(handle, file_name=attachment.filename), caption=text)
            return str(message.message_id)
        except Exception as exc:
            raise classify(exc) from None

    def close(self) -> None:
        """Nothing to close: the HTTP session is telebot's. (`TeleBot.close()` is the Bot API's
        "close" method, which logs the bot out of the server; never call it here.)"""
