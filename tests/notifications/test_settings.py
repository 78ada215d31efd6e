"""The notification settings fail closed, in a child process as a deployment starts: a messaging API over plain
http in production (unless explicitly allowed, for the stand-ins), and a sender run that could reach Celery's soft
limit, are refused, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

PRODUCTION = {
    "DJANGO_SECRET_KEY": "k8Hq2vX9pL4mN7rT1wZ5yB3cF6gJ0dS8aE2uI9oP4lK7jH1nM5bV3xC6zQ",
    "DJANGO_ALLOWED_HOSTS": "dash.example.com",
}


def start(**env: str) -> subprocess.CompletedProcess[str]:
    child = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ALERT_", "NOTIFY_", "NOTIFICATIONS_", "TWILIO_"))
    }
    child.update({"DOTENV_FILE": "", **env})
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'cryptoproject.settings'; django.setup()"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("name", ["TWILIO_API_URL", "TELEGRAM_API_URL"])
def test_a_plain_http_messaging_api_is_refused_in_production(name: str) -> None:
    refused = start(**PRODUCTION, **{name: "http://127.0.0.1:9461", "TWILIO_AUTH_TOKEN": "tok-Secret-123"})
    assert refused.returncode != 0
    assert f"{name}=http://127.0.0.1:9461 is not https" in refused.stderr
    assert "tok-Secret-123" not in refused.stderr
    allowed = start(**PRODUCTION, **{name: "http://127.0.0.1:9461", "NOTIFY_ALLOW_INSECURE_APIS": "true"})
    assert allowed.returncode == 0, allowed.stderr


def test_a_sender_run_that_could_reach_the_soft_limit_is_refused() -> None:
    refused = start(DJANGO_DEBUG="true", NOTIFY_RUN_SECONDS="110", NOTIFY_ATTEMPT_DEADLINE_SECONDS="10")
    assert refused.returncode != 0
    assert "NOTIFY_RUN_SECONDS" in refused.stderr


def test_a_delivery_retention_under_a_day_is_refused() -> None:
    refused = start(DJANGO_DEBUG="true", NOTIFICATIONS_DELIVERY_RETENTION_DAYS="0")
    assert refused.returncode != 0
    assert "NOTIFICATIONS_DELIVERY_RETENTION_DAYS" in refused.stderr
