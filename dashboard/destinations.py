"""A user's new destination from the API and the pages: the fields checked and named for a 400, the target checked
by :func:`notifications.validation.validate_target` (an e-mail address, an E.164 number, a Telegram chat, or a
webhook URL that passes the SSRF guard)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from notifications.models import ChannelKind, Destination, WebhookFormat
from notifications.validation import validate_target

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
    try:
        target = validate_target(kind, target)
    except ValidationError as exc:
        raise DestinationError("target", f"{' '.join(exc.messages)}.".replace("..", ".")) from exc
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
