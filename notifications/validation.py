"""Checking a destination's target for its channel, where it is saved (API, pages, admin) and not only at send time.

``validate_target(kind, target)`` returns the normalised target or raises ``ValidationError`` with a message the
user can act on: an e-mail address, an E.164 number, a Telegram chat id or ``@channel``, or a webhook URL the SSRF
guard accepts (checked again before every send, because DNS answers change).
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from notifications.channels.sms import e164
from notifications.models import ChannelKind
from notifications.targets import UnsafeTargetError, resolve_webhook_target

_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


def validate_target(kind: str, target: str) -> str:
    """``target`` normalised for ``kind``; raises ``ValidationError`` when it cannot receive that channel."""
    target = target.strip()
    if kind == ChannelKind.IN_APP:
        if target:
            raise ValidationError("in-app destinations have no target")
        return ""
    if not target:
        raise ValidationError("a target is required")
    if kind == ChannelKind.EMAIL:
        validate_email(target)
        return target
    if kind == ChannelKind.SMS:
        try:
            return e164(target)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
    if kind == ChannelKind.TELEGRAM:
        if not _CHAT.match(target):
            raise ValidationError("a Telegram chat id (a number) or @channel name")
        return target
    if kind == ChannelKind.WEBHOOK:
        try:
            resolve_webhook_target(target)
        except UnsafeTargetError as exc:
            raise ValidationError(str(exc)) from exc
        return target
    raise ValidationError(f"unknown channel {kind!r}")
