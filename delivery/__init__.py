"""Channels send a run's documents to its recipients; they never render or query.

`CHANNELS` maps each `models.base.Channel` to a factory of an open `Sender`;
the deliver step (`pipeline.deliver`) decides who is sent what, and records it.
"""

from __future__ import annotations

from collections.abc import Callable

from delivery.base import Attachment, DeliveryError, Letter, Sender, document_path
from delivery.mail import MailSender
from delivery.telegram import TelegramSender
from models.base import Channel
from models.settings import Settings

CHANNELS: dict[Channel, Callable[[Settings], Sender]] = {
    Channel.EMAIL: MailSender,
    Channel.TELEGRAM: TelegramSender,
}

__all__ = ["CHANNELS", "Attachment", "DeliveryError", "Letter", "Sender", "document_path"]
