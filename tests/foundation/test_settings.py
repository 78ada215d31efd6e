"""Settings from the environment: production refuses to start without a secret key, passes check --deploy,
and bad values stop commands at start with a message that names the setting and the address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, manage, subprocess_env

PROD_KEY = "k8Hq2vX9pL4mN7rT1wZ5yB3cF6gJ0dS8aE2uI9oP4lK7jH1nM5bV3xC6zQ"


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a manage.py command in a clean child with ``env`` on top of this environment.

    Development mode unless ``env`` says otherwise: the settings default to production (``DJANGO_DEBUG=false``).
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "KAFKA_"))}
    child_env["DJANGO_DEBUG"] = "true"
    child_env.update(env)
    return subprocess.run(args, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=60, check=False)


def test_production_refuses_to_start_without_secret_key() -> None:
    result = run(manage("check"), DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_production_settings_pass_check_deploy_without_warnings() -> None:
    result = run(
        [*manage("check", "--deploy", "--fail-level", "WARNING")],
        # The deploy checks look for a demo user: in this run's own (empty) test database.
        DATABASE_URL=subprocess_env()["DATABASE_URL"],
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PROD_KEY,
        DJANGO_ALLOWED_HOSTS="dash.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "mysql://u:p@localhost/db"}, "DATABASE_URL"),
        ({"DATABASE_REPLICA_URL": "mysql://u:p@localhost/db"}, "DATABASE_REPLICA_URL"),
        ({"DATABASE_REPLICA_URL": "postgres://u:p@localhost:port/db"}, "DATABASE_REPLICA_URL"),
        ({"DATABASE_REPLICA_PIN_SECONDS": "-1"}, "DATABASE_REPLICA_PIN_SECONDS"),
        ({"KAFKA_SECURITY_PROTOCOL": "CARRIER_PIGEON"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"WHALE_THRESHOLD_USD": "lots"}, "WHALE_THRESHOLD_USD"),
        ({"TRADE_RETENTION_DAYS": "forever"}, "TRADE_RETENTION_DAYS"),
        ({"INDICATOR_MA_PERIODS": "7,x"}, "INDICATOR_MA_PERIODS"),
        ({"INDICATOR_MA_PERIODS": "0"}, "INDICATOR_MA_PERIODS"),
        ({"INDICATOR_MAX_GAP_BARS": "0"}, "INDICATOR_MAX_GAP_BARS"),
        ({"INDICATOR_MAX_GAP_BARS": "a day"}, "INDICATOR_MAX_GAP_BARS"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG"),
        ({"INGEST_BUFFER_BYTES": "64MB"}, "INGEST_BUFFER_BYTES"),
        ({"INGEST_BUFFER_BYTES": "0"}, "INGEST_BUFFER_BYTES"),
        ({"INGEST_JOURNAL_BYTES": "-1"}, "INGEST_JOURNAL_BYTES"),
    ],
)
def test_bad_setting_stops_with_its_name(env: dict[str, str], named: str) -> None:
    result = run(manage("check"), **env)
    assert result.returncode != 0
    assert named in result.stderr


def test_unreachable_kafka_fails_fast_naming_the_address() -> None:
    started = time.monotonic()
    result = run(manage("create_topics"), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1" in result.stderr
    print(f"create_topics with an unreachable broker exited after {elapsed:.1f} s")


def test_unreachable_database_fails_fast_naming_the_address() -> None:
    result = run(manage("check_stack"), DATABASE_URL="postgres://crypto:crypto@127.0.0.1:1/crypto")
    assert result.returncode != 0
    assert "DATABASE_URL (127.0.0.1:1/crypto)" in result.stderr


def test_check_stack_reports_every_server() -> None:
    result = run(manage("check_stack"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["postgresql:", "ok", "kafka:", "ok", "redis:", "ok"]


def test_unreachable_redis_is_named() -> None:
    result = run(manage("check_stack", "--timeout", "2"), REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "REDIS_URL=redis://127.0.0.1:1/0" in result.stderr


def test_json_logs_carry_level_and_logger() -> None:
    code = "import logging, django; django.setup(); logging.getLogger('probe').warning('hello', extra={'n': 1})"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "cryptoproject.settings", "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["level"] == "WARNING"
    assert record["logger"] == "probe"
    assert record["message"] == "hello"
    assert record["n"] == 1
