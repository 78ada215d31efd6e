"""The channels a delivery goes out on, one module each; :func:`channel_for` picks a delivery's."""

from __future__ import annotations

from types import ModuleType

from notifications.channels import email, in_app, sms, telegram, webhook
from notifications.models import ChannelKind

CHANNELS: dict[str, ModuleType] = {
    ChannelKind.WEBHOOK: webhook,
    ChannelKind.EMAIL: email,
    ChannelKind.SMS: sms,
    ChannelKind.TELEGRAM: telegram,
    ChannelKind.IN_APP: in_app,
}


def channel_for(kind: str) -> ModuleType:
    """The module that sends deliveries of ``kind`` (``send``, ``target``)."""
    return CHANNELS[kind]
