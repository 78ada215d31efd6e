"""Security on the real PostgreSQL and Redis: secrets never shown, an API that degrades without Redis, throttles
that a header cannot reset, login lockout, strict parameters, bounded queries, and the deploy checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from cryptoproject.middleware import StatementTimeoutMiddleware
from cryptoproject.security import SensitiveSettingsFilter, client_ip, redact_text, redact_url
from dashboard import health
from dashboard.checks import demo_user_absent, refuse_known_passwords
from tests.conftest import ROOT, subprocess_env, wait_for
from tests.dashboard.api_factories import locmem_cache, make_whale

pytestmark = pytest.mark.django_db
__all__ = ["locmem_cache"]

DB_SECRET = "Db-s3cret-Pw"
REDIS_SECRET = "Rd-s3cret-Pw"


@pytest.fixture
def open_api(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True))
    return client


# --------------------------------------------------------------------------------------------- redaction helpers
def test_redaction_helpers() -> None:
    assert redact_url(f"redis://:{REDIS_SECRET}@cache.internal:6379/0") == "redis://cache.internal:6379/0"
    assert redact_url(f"postgres://crypto:{DB_SECRET}@db:5432/crypto") == "postgres://db:5432/crypto"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("not a url") == "not a url"
    text = f"Error connecting to redis://user:{REDIS_SECRET}@h:1/0 and 'amqp://u:p@q/'"
    assert REDIS_SECRET not in redact_text(text)
    assert "redis://h:1/0" in redact_text(text)


@pytest.mark.parametrize(
    ("url", "bare"),
    [
        ("postgres://crypto:p@ss{}@db:5432/crypto", "postgres://db:5432/crypto"),
        ("postgres://crypto:p@ss{}@db/crypto?sslmode=require", "postgres://db/crypto?sslmode=require"),
        ("redis://:p@ss{}@cache.internal:6379/0", "redis://cache.internal:6379/0"),
        ("rediss://default:a@b@c{}@cache:6380/1", "rediss://cache:6380/1"),
        ("amqp://u@ser:p@ss{}@mq:5672/", "amqp://mq:5672/"),
        ("sasl://alice:pa@ss:w{}@broker-1:9093", "sasl://broker-1:9093"),  # a Kafka SASL login quoted as a URL
    ],
)
def test_redaction_hides_every_part_of_a_password_with_an_unencoded_at(url: str, bare: str) -> None:
    """A password with ``@`` (unencoded, as people paste them) leaks nothing: not the part after its first ``@``."""
    secret_url = url.format(REDIS_SECRET)
    assert redact_url(secret_url) == bare
    text = redact_text(f"Error connecting to {secret_url}: refused; also '{secret_url}' and \"{secret_url}\"")
    assert REDIS_SECRET not in text
    assert "@" not in text  # no part of the userinfo is left
    assert text.count(bare) == 3
    safe = SensitiveSettingsFilter().cleanse_setting("SOME_NOTE", f"see {secret_url}")
    assert safe == f"see {bare}"


def test_kafka_sasl_credentials_are_hidden_whole(settings: Any) -> None:
    settings.KAFKA_SASL_USERNAME = "alice"
    settings.KAFKA_SASL_PASSWORD = f"p@ss{REDIS_SECRET}"
    safe = SensitiveSettingsFilter().get_safe_settings()
    assert safe["KAFKA_SASL_PASSWORD"] == SensitiveSettingsFilter.cleansed_substitute
    assert REDIS_SECRET not in repr(safe)


# --------------------------------------------------------------------------------------------- finding 1 (debug page)
def test_debug_error_page_hides_every_url_and_credential(client: Client, settings: Any) -> None:
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.DATABASE_URL = f"postgres://crypto:{DB_SECRET}@10.0.0.5:5432/crypto"
    settings.REDIS_URL = f"redis://:{REDIS_SECRET}@10.0.0.6:6379/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SOME_OTHER_SETTING = f"see amqp://guest:{REDIS_SECRET}@mq/"
    response = client.get("/", HTTP_HOST="203.0.113.7")
    assert response.status_code == 400
    body = response.content.decode()
    assert "DisallowedHost" in body  # the debug page itself
    assert DB_SECRET not in body
    assert REDIS_SECRET not in body
    safe = SensitiveSettingsFilter().get_safe_settings()
    assert safe["DATABASE_URL"] == SensitiveSettingsFilter.cleansed_substitute
    assert safe["CACHES"] == SensitiveSettingsFilter.cleansed_substitute


# --------------------------------------------------------------------------------------------- finding 2 (health)
@pytest.mark.usefixtures("open_api", "locmem_cache")
def test_health_never_shows_redis_credentials_and_details_only_to_staff(
    client: Client, staff_client: Client, settings: Any
) -> None:
    settings.REDIS_URL = f"redis://:{REDIS_SECRET}@127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    health.clear_cache()
    anonymous = client.get("/api/v1/health")
    assert anonymous.status_code == 200
    assert REDIS_SECRET not in anonymous.content.decode()
    assert "127.0.0.1:1" not in anonymous.content.decode()  # no addresses for non-staff either
    assert anonymous.json()["errors"] == ["a data source is unavailable"] * 3
    staff = staff_client.get("/api/v1/health")
    assert REDIS_SECRET not in staff.content.decode()
    assert any("Redis at redis://127.0.0.1:1/0" in e for e in staff.json()["errors"])


# --------------------------------------------------------------------------------------------- finding 3 (Redis down)
@pytest.mark.usefixtures("open_api")
def test_api_answers_when_the_throttle_cache_is_unreachable(
    client: Client, staff_client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    for path in ("/api/v1/symbols", "/api/v1/stats", "/api/v1/whales"):
        assert client.get(path).status_code == 200, path
    assert staff_client.get("/api/v1/symbols").status_code == 200
    assert "API throttle cache unavailable" in caplog.text


@pytest.fixture
def stack_redis() -> Iterator[int]:
    """This stack's Redis port; Redis is started again (``scripts/stack.sh up``) after the test.

    The Redis the settings use must be the one ``scripts/stack.sh`` manages here (``STACK_REDIS_PORT``, default
    16379, as ``make test`` runs it), so the test stops only the suite's own server and can start it again.
    """
    port = urlsplit(django_settings.CACHES["default"]["LOCATION"]).port
    pid_file = Path(os.environ.get("STACK_DIR", ROOT / ".stack")) / "redis" / "redis.pid"
    if port != int(os.environ.get("STACK_REDIS_PORT", "16379")) or not pid_file.exists():
        pytest.skip(f"the cache's Redis (port {port}) is not this checkout's stack: scripts/stack.sh cannot restart it")
    yield int(port)
    subprocess.run(["bash", "scripts/stack.sh", "up"], cwd=ROOT, check=True, capture_output=True, timeout=180)
    client = redis.Redis(port=int(port), socket_connect_timeout=1)
    wait_for(lambda: _pings(client), timeout=60, what="Redis to answer again")


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.mark.integration
@pytest.mark.usefixtures("open_api")
def test_api_and_health_answer_with_the_real_redis_stopped(
    client: Client, staff_client: Client, stack_redis: int
) -> None:
    assert django_settings.CACHES["default"]["LOCATION"].endswith(f":{stack_redis}/0")
    redis.Redis(port=stack_redis).shutdown(nosave=True)
    wait_for(lambda: not _pings(redis.Redis(port=stack_redis, socket_connect_timeout=0.5)), what="Redis to stop")
    health.clear_cache()
    assert client.get("/api/v1/symbols").status_code == 200
    assert client.get("/api/v1/stats").status_code == 200
    response = staff_client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["queues"] is None
    assert any(e.startswith("Redis at redis://127.0.0.1:") for e in body["errors"])


# --------------------------------------------------------------------------------------------- finding 4 (XFF)
@pytest.mark.usefixtures("open_api", "locmem_cache")
def test_rotating_x_forwarded_for_does_not_reset_the_anonymous_limit(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min", "user": "100/min"})
    statuses = [client.get("/api/v1/symbols", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(1, 4)]
    assert statuses == [200, 200, 429]


def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(settings: Any) -> None:
    request = HttpRequest()
    request.META = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"}
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.9"  # what our proxy saw; the client's own claim (6.6.6.6) is ignored
    settings.TRUSTED_PROXY_COUNT = 5
    assert client_ip(request) == "6.6.6.6"


# --------------------------------------------------------------------------------------------- finding 5 (lockout)
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_repeated_login_failures_lock_the_account_out(client: Client, settings: Any, path: str) -> None:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_user("erin", password="pw-erin-correct-1", is_staff=True)
    for _ in range(2):
        assert client.post(path, {"username": "erin", "password": "wrong"}).status_code == 200  # the form again
    assert client.post(path, {"username": "erin", "password": "wrong"}).status_code == 429
    # Locked: even the right password is refused now.
    response = client.post(path, {"username": "erin", "password": "pw-erin-correct-1"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


# --------------------------------------------------------------------------------------------- finding 6 (params)
@pytest.mark.usefixtures("open_api", "locmem_cache")
@pytest.mark.parametrize(
    ("endpoint", "query", "param"),
    [
        ("candles", "start=--1", "start"),
        ("candles", "start=%C2%B2", "start"),  # "²": str.isdigit() is true, int() refuses it
        ("candles", "end=%D9%A3", "end"),  # Arabic-Indic digit three
        ("candles", "limit=%C2%B2", "limit"),
        ("candles", "limit=1_0", "limit"),
        ("whales", "min_notional=1e999999999", "min_notional"),
        ("whales", "min_notional=1_000", "min_notional"),
        ("whales", "min_notional=-5", "min_notional"),
        ("trades", "limit=99999999999999999999999", "limit"),
    ],
)
def test_odd_numbers_are_a_400_naming_the_parameter(client: Client, endpoint: str, query: str, param: str) -> None:
    response = client.get(f"/api/v1/{endpoint}?exchange=binance&symbol=BTCUSDT&{query}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("term", ["²", "٣", "99999999999999999999999", " 12 ", "abc"])
@pytest.mark.parametrize("model", ["whalealert", "trade"])
def test_admin_trade_id_search_never_fails(admin_client: Client, term: str, model: str) -> None:
    make_whale(12)
    response = admin_client.get(f"/admin/analytics/{model}/", {"q": term})
    assert response.status_code == 200


# --------------------------------------------------------------------------------------------- finding 10
def test_whale_queries_by_symbol_use_the_symbol_time_index() -> None:
    for i in range(50):
        make_whale(i + 1, symbol="BTCUSDT" if i % 2 else "ETHUSDT")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE analytics_whalealert")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT * FROM analytics_whalealert WHERE exchange = 'binance' AND symbol = 'BTCUSDT' "
            "AND notional >= 100 ORDER BY traded_at DESC, id DESC LIMIT 100"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "whale_symbol_time" in plan, plan


def test_web_requests_have_a_statement_timeout_and_the_connection_gets_it_back(settings: Any) -> None:
    settings.DATABASE_WEB_STATEMENT_TIMEOUT_MS = 100

    def slow_view(request: HttpRequest) -> HttpResponse:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")
        return HttpResponse("too slow to get here")

    def timeout_now() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            return str(cursor.fetchone()[0])

    before = timeout_now()
    middleware = StatementTimeoutMiddleware(slow_view)
    with pytest.raises(OperationalError, match="statement timeout"):
        middleware(HttpRequest())
    # The test's transaction is aborted by the cancelled statement: check the reset on a request that succeeds.
    connection.needs_rollback = False
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK")
    seen: list[str] = []

    def quick_view(request: HttpRequest) -> HttpResponse:
        seen.append(timeout_now())
        return HttpResponse("ok")

    StatementTimeoutMiddleware(quick_view)(HttpRequest())
    assert seen == ["100ms"]
    assert timeout_now() == before  # consumer, Celery and commands share the setting-free default


def test_statement_timeout_can_be_switched_off(settings: Any) -> None:
    settings.DATABASE_WEB_STATEMENT_TIMEOUT_MS = 0
    seen: list[str] = []

    def view(request: HttpRequest) -> HttpResponse:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            seen.append(str(cursor.fetchone()[0]))
        return HttpResponse("ok")

    StatementTimeoutMiddleware(view)(HttpRequest())
    assert seen == ["0"]


# --------------------------------------------------------------------------------------------- finding 11
def test_deploy_check_fails_while_the_demo_user_exists() -> None:
    assert demo_user_absent() == []
    get_user_model().objects.create_superuser("demo", "demo@localhost", "demo")
    errors = demo_user_absent()
    assert [e.id for e in errors] == ["dashboard.E001"]
    with pytest.raises(SystemCheckError, match=r"dashboard\.E001"):
        call_command("check", "--deploy", "--fail-level", "ERROR")


def test_production_start_up_refuses_the_demo_password(settings: Any) -> None:
    settings.DEBUG = False
    refuse_known_passwords()  # no demo account: starts
    demo = get_user_model().objects.create_superuser("demo", "demo@localhost", "demo")
    with pytest.raises(ImproperlyConfigured, match=r"refusing to start: .*demo.*changepassword"):
        refuse_known_passwords()
    settings.DEBUG = True
    refuse_known_passwords()  # make demo itself
    settings.DEBUG = False
    demo.set_password("a-new-long-private-passphrase")
    demo.save()
    refuse_known_passwords()  # its password changed: check --deploy still reports the name (dashboard.E001)


@pytest.mark.django_db(transaction=True)
def test_production_web_server_does_not_start_with_the_demo_password() -> None:
    """The ASGI application daphne loads, in a production child on this test's database."""
    from tests.foundation.test_fail_closed import PRODUCTION, run

    get_user_model().objects.create_superuser("demo", "demo@localhost", "demo")
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'cryptoproject.settings'; import cryptoproject.%s"
    for entry in ("asgi", "wsgi"):
        result = run([sys.executable, "-c", code % entry], **PRODUCTION, DATABASE_URL=subprocess_env()["DATABASE_URL"])
        assert result.returncode != 0, entry
        assert "refusing to start: the account(s) demo still have the password" in result.stderr, result.stderr
    get_user_model().objects.filter(username="demo").delete()
    result = run([sys.executable, "-c", code % "asgi"], **PRODUCTION, DATABASE_URL=subprocess_env()["DATABASE_URL"])
    assert result.returncode == 0, result.stderr


def test_metrics_listen_on_loopback_only_by_default() -> None:
    from ingest.metrics import IngestMetrics, serve_prometheus

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve_prometheus(IngestMetrics("binance"), port)
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # 127.0.0.2 is loopback too, but a socket bound to 127.0.0.1 (not 0.0.0.0) does not answer it.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
