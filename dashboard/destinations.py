"""Validating a user's new destination (the API and the pages): an e-mail address, an E.164 number, a Telegram
chat, or a webhook URL that passes the SSRF guard (:mod:`dashboard.webhook_targets`).

Here and not in ``notifications`` because the SSRF guard lives in the dashboard, above ``notifications``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import IntegrityError, transaction

from dashboard.webhook_targets import UnsafeTargetError, check_webhook_target
from notifications.models import ChannelKind, Destination, WebhookFormat

# A numeric chat id (groups and channels are negative) or a public channel's @username.
_TELEGRAM_CHAT = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}", re.ASCII)


class DestinationError(ValueError):
    """An invalid destination: ``param`` names the field (``kind``, ``target``, ``format``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class CleanDestination:
    """A valid destination's fields, normalised (an SMS number in E.164)."""

    kind: str
    target: str
    format: str


def e164(raw: str) -> str:
    """The number in E.164 (``+14155550123``); a :class:`DestinationError` unless it is a valid international one."""
    if not raw.startswith("+"):
        raise DestinationError("target", "an SMS number must be in international E.164 form, e.g. +14155550123.")
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise DestinationError("target", f"not a phone number: {exc}.") from exc
    if not phonenumbers.is_valid_number(number):
        raise DestinationError("target", "not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_destination(data: dict[str, Any]) -> CleanDestination:
    """Validate ``{"kind", "target", "format"}``; webhook hosts must be public (unless allowed by settings)."""
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in ChannelKind.values:
        raise DestinationError("kind", f"'kind' must be one of {', '.join(ChannelKind.values)}.")
    target = data.get("target") or ""
    if not isinstance(target, str) or len(target) > 500:
        raise DestinationError("target", "'target' must be a string of at most 500 characters.")
    target = target.strip()
    fmt = data.get("format") or WebhookFormat.GENERIC
    if kind != ChannelKind.WEBHOOK:
        fmt = WebhookFormat.GENERIC
    elif not isinstance(fmt, str) or fmt not in WebhookFormat.values:
        raise DestinationError("format", f"'format' must be one of {', '.join(WebhookFormat.values)}.")
    if kind == ChannelKind.IN_APP:
        if target:
            raise DestinationError("target", "an in-app destination has no target.")
        return CleanDestination(kind, "", fmt)
    if not target:
        raise DestinationError("target", "'target' is required.")
    if kind == ChannelKind.EMAIL:
        try:
            EmailValidator()(target)
        except ValidationError as exc:
            raise DestinationError("target", "enter a valid e-mail address.") from exc
    elif kind == ChannelKind.SMS:
        target = e164(target)
    elif kind == ChannelKind.TELEGRAM:
        if not _TELEGRAM_CHAT.fullmatch(target):
            raise DestinationError("target", "a Telegram chat is a numeric chat id or a channel's @username.")
    else:
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError as exc:
            raise DestinationError("target", "enter a valid http(s) URL.") from exc
        try:
            check_webhook_target(target)
        except UnsafeTargetError as exc:
            raise DestinationError("target", str(exc)) from exc
    return CleanDestination(kind, target, fmt)


def create_destination(owner_id: int, clean: CleanDestination) -> Destination:
    """Save it; a generic webhook gets a new HMAC secret (shown to its owner once). A duplicate names ``target``."""
    secret = secrets.token_urlsafe(32) if clean.kind == ChannelKind.WEBHOOK and clean.format == "generic" else ""
    try:
        with transaction.atomic():
            return Destination.objects.create(
                owner_id=owner_id, kind=clean.kind, target=clean.target, format=clean.format, secret=secret
            )
    except IntegrityError as exc:
        raise DestinationError("target", "you already have this destination.") from exc
