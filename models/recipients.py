"""Recipient addresses: validated and normalised before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

from models.base import Channel
from models.errors import InvalidInput

_CHAT_ID = re.compile(r"^-?\d{1,20}$")


def normalise_email(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise InvalidInput(f"{address!r} is not a valid e-mail address ({reason}).") from None


def normalise_chat_id(chat_id: str) -> str:
    text = str(chat_id).strip()
    if not _CHAT_ID.fullmatch(text):
        raise InvalidInput(
            f"Telegram chat id {chat_id!r} is not numeric; use the chat's numeric id, "
            f"e.g. 123456789 or -1001234567890 for a group."
        )
    return text


def normalise_recipients(
    emails: Iterable[str], chats: Iterable[str], limit: int
) -> list[tuple[Channel, str]]:
    """Validated (channel, address) pairs without duplicates, at most `limit` of them."""
    pairs = [(Channel.EMAIL, normalise_email(a)) for a in emails]
    pairs += [(Channel.TELEGRAM, normalise_chat_id(c)) for c in chats]
    unique = list(dict.fromkeys(pairs))
    if len(unique) > limit:
        raise InvalidInput(
            f"{len(unique)} recipients given; a schedule may have at most {limit}. "
            f"Use a mailing list or a Telegram group for more."
        )
    return unique
