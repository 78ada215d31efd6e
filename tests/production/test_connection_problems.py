"""What :mod:`cryptoproject.connection_problems` and the start-up checks call a setting problem and what an outage
(the servers' side is ``tests/production/test_tls.py``'s, on a real TLS stack)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import redis
from django.core.management.base import CommandError

from cryptoproject.connection_problems import (
    kafka_sasl_problem,
    kafka_tls_problem,
    postgres_problem,
    redis_problem,
    tls_problem,
)
from cryptoproject.preflight import require_redis

pytestmark = pytest.mark.unit

CLOSED = "127.0.0.1:1"  # nothing listens there: an outage, never a setting


def verification_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    err.verify_code = code
    err.verify_message = message
    return err


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            'connection to server at "h", port 5432 failed: SSL error: certificate verify failed',
            "DATABASE_URL (sslrootcert)",
        ),
        ('root certificate file "/x.pem" does not exist', "DATABASE_URL (sslrootcert)"),
        ('server certificate for "localhost" does not match host name "127.0.0.2"', "DATABASE_URL (host)"),
        ('FATAL:  password authentication failed for user "crypto"', "DATABASE_URL (password)"),
        ('FATAL:  no pg_hba.conf entry for host "h", user "u", database "d", no encryption', "DATABASE_URL (sslmode)"),
        ('FATAL:  no pg_hba.conf entry for host "h", user "u", database "d", SSL encryption', "DATABASE_URL (user,"),
        ("connection refused", None),
    ],
)
def test_libpq_errors_name_the_part_of_database_url(text: str, named: str | None) -> None:
    problem = postgres_problem(text)
    assert (problem is None) if named is None else (problem or "").startswith(named)


def test_a_certificate_for_another_name_names_the_host_setting_and_any_other_failure_the_ca() -> None:
    for code in (62, 64):
        wrapped = redis.ConnectionError("network")
        wrapped.__context__ = verification_error(code, "IP address mismatch")
        assert (tls_problem(wrapped, host="h", host_setting="HOST", ca_setting="CA") or "").startswith("HOST: ")
    unknown_ca = verification_error(19, "self-signed certificate in certificate chain")
    assert (tls_problem(unknown_ca, host="h", host_setting="HOST", ca_setting="CA") or "").startswith("CA: ")
    missing = FileNotFoundError(2, "No such file or directory", "/nowhere/ca.pem")
    assert "/nowhere/ca.pem" in (tls_problem(missing, host="h", host_setting="HOST", ca_setting="CA") or "")
    assert tls_problem(ConnectionRefusedError(111, "refused"), host="h", host_setting="HOST", ca_setting="CA") is None


def test_a_refused_redis_password_names_the_setting() -> None:
    problem = redis_problem(redis.AuthenticationError("invalid password"), setting="CELERY_BROKER_URL", host="h:1")
    assert (problem or "").startswith("CELERY_BROKER_URL (password): ")
    assert redis_problem(redis.ConnectionError("refused"), setting="REDIS_URL", host="h:1") is None


def test_an_unreachable_broker_is_an_outage_not_a_setting() -> None:
    assert kafka_tls_problem(CLOSED, "") is None
    common: dict[str, Any] = {"tls": True, "cafile": "", "username": "u", "password": "p"}
    assert kafka_sasl_problem(CLOSED, mechanism="SCRAM-SHA-512", **common) is None
    # A mechanism the probe does not speak is left to kafka-python.
    assert kafka_sasl_problem(CLOSED, mechanism="OAUTHBEARER", **common) is None


def test_an_unreadable_kafka_ca_file_names_kafka_ssl_cafile() -> None:
    assert (kafka_tls_problem(CLOSED, "/nowhere/ca.pem") or "").startswith("KAFKA_SSL_CAFILE: ")


def test_a_redis_outage_at_start_is_ridden_out_unless_it_must_answer(settings: Any) -> None:
    settings.REDIS_URL = f"redis://{CLOSED}/0"
    require_redis(["REDIS_URL"], timeout=0.5)  # ingest, consume_trades and workers start anyway
    with pytest.raises(CommandError, match=r"Redis is unreachable at REDIS_URL=redis://127\.0\.0\.1:1/0"):
        require_redis(["REDIS_URL"], timeout=0.5, outage_is_fatal=True)  # check_stack
