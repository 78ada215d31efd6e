"""Destination targets are checked per channel where they are saved (the pages and the API), not only when sent."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from notifications.models import ChannelKind
from notifications.validation import validate_target

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.mark.parametrize(
    ("kind", "target", "normalised"),
    [
        (ChannelKind.EMAIL, " dana@example.com ", "dana@example.com"),
        (ChannelKind.SMS, "+1 415 555 0100", "+14155550100"),
        (ChannelKind.TELEGRAM, "-100123456", "-100123456"),
        (ChannelKind.TELEGRAM, "@cryptoalerts", "@cryptoalerts"),
        (ChannelKind.IN_APP, "", ""),
    ],
)
def test_valid_targets_are_normalised(kind: str, target: str, normalised: str) -> None:
    assert validate_target(kind, target) == normalised


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (ChannelKind.EMAIL, "not-an-address"),
        (ChannelKind.SMS, "4155550100"),  # no country code: not E.164
        (ChannelKind.SMS, "+1555"),
        (ChannelKind.TELEGRAM, "chat one"),
        (ChannelKind.WEBHOOK, "http://127.0.0.1/hook"),
        (ChannelKind.WEBHOOK, "ftp://example.com/x"),
        (ChannelKind.IN_APP, "someone"),
    ],
)
def test_invalid_targets_are_refused(kind: str, target: str, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError):
        validate_target(kind, target)
