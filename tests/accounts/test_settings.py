"""The accounts settings fail closed: sign-up is off in production unless set, and bad bounds stop the start."""

from __future__ import annotations

import json

import pytest

from tests.conftest import manage
from tests.foundation.test_fail_closed import PRODUCTION, python, run

PROBE = "import json\nfrom django.conf import settings\nprint(json.dumps(settings.ACCOUNTS_SIGNUP_OPEN))\n"


def test_signup_is_closed_in_production_unless_opened() -> None:
    closed = python(PROBE, **PRODUCTION)
    assert closed.returncode == 0, closed.stderr
    assert json.loads(closed.stdout.strip().splitlines()[-1]) is False
    opened = python(PROBE, **PRODUCTION, ACCOUNTS_SIGNUP_OPEN="true")
    assert json.loads(opened.stdout.strip().splitlines()[-1]) is True
    development = python(PROBE, DJANGO_DEBUG="true")
    assert json.loads(development.stdout.strip().splitlines()[-1]) is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCOUNTS_MAX_WATCHLIST", "0"),
        ("ACCOUNTS_MAX_API_TOKENS", "-1"),
        ("ACCOUNTS_TOKEN_MAX_DAYS", "5000"),
        ("ACCOUNTS_INVITATION_DAYS", "0"),
        ("ACCOUNTS_SIGNUP_LINK_HOURS", "x"),
    ],
)
def test_bad_accounts_settings_are_refused_naming_them(name: str, value: str) -> None:
    result = run(manage("check"), DJANGO_DEBUG="true", **{name: value})
    assert result.returncode != 0
    assert name in result.stderr
