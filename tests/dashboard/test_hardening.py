"""Findings of the code review of issue 22, on the real PostgreSQL and Redis: the deploy check of an open dashboard,
login lockout per address and per IPv6 /64, strict integer parameters on the API and the pages, a ``/healthz``
that names no host, and a hard limit on request bodies (the API's JSON parser and chunked bodies under ASGI too)."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from benchmarks.harness import free_port, port_open
from cryptoproject.asgi import application
from cryptoproject.kafka_offsets import CONSUMER_METRICS_PREFIX
from dashboard import health
from tests.conftest import ROOT, ChildProcess, subprocess_env, wait_for
from tests.dashboard.api_factories import locmem_cache

pytestmark = pytest.mark.django_db
__all__ = ["locmem_cache"]


@pytest.fixture
def open_api(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


# --------------------------------------------------------------------------------------------- 1: open production
def test_deploy_check_reports_a_dashboard_open_to_everyone(settings: Any) -> None:
    from dashboard.checks import login_required_in_production

    settings.DASHBOARD_LOGIN_REQUIRED = True
    assert login_required_in_production() == []
    settings.DASHBOARD_LOGIN_REQUIRED = False
    settings.DASHBOARD_PUBLIC_READONLY = False
    assert [e.id for e in login_required_in_production()] == ["dashboard.E002"]
    with pytest.raises(SystemCheckError, match=r"dashboard\.E002"):
        call_command("check", "--deploy", "--fail-level", "ERROR")
    # The explicit opt-in: reported for the record, not an error.
    settings.DASHBOARD_PUBLIC_READONLY = True
    assert [(m.id, m.is_serious()) for m in login_required_in_production()] == [("dashboard.I002", False)]


@pytest.mark.usefixtures("locmem_cache")
def test_a_public_read_only_dashboard_refuses_anonymous_writes(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    settings.DASHBOARD_PUBLIC_READONLY = True
    assert client.get("/api/v1/backtests").status_code == 200
    assert client.get("/backtests/").status_code == 200
    response = client.post("/api/v1/backtests", json.dumps({"strategy": "sma_cross"}), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert client.post("/backtests/", {"strategy": "sma_cross"}).status_code == 302  # to the login page


# --------------------------------------------------------------------------------------------- 3: lockout
def _login(client: Client, username: str, password: str, address: str, path: str = "/accounts/login/") -> int:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address).status_code


@pytest.fixture
def lockout(settings: Any) -> None:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_ADDRESS_FAILURE_LIMIT = 5
    get_user_model().objects.create_user("erin", password="pw-erin-correct-1")


@pytest.mark.usefixtures("lockout")
def test_many_usernames_from_one_address_lock_that_address_out(client: Client) -> None:
    for n in range(4):
        assert _login(client, f"guess-{n}", "wrong", "198.51.100.7") == 200  # one failure per name: under 3
    assert _login(client, "guess-4", "wrong", "198.51.100.7", "/admin/login/") == 429  # the 5th from the address
    # Locked for every name from that address, even with the right password...
    assert _login(client, "erin", "pw-erin-correct-1", "198.51.100.7") == 429
    # ... and only from that address.
    assert _login(client, "erin", "pw-erin-correct-1", "198.51.100.8") == 302


@pytest.mark.usefixtures("lockout")
def test_ipv6_clients_count_by_their_64(client: Client) -> None:
    assert _login(client, "erin", "wrong", "2001:db8:1:2::1") == 200
    assert _login(client, "erin", "wrong", "2001:db8:1:2:aaaa::2") == 200
    assert _login(client, "erin", "wrong", "2001:db8:1:2:ffff:ffff:ffff:fffe") == 429  # the 3rd in that /64
    assert _login(client, "erin", "pw-erin-correct-1", "2001:db8:1:2::77") == 429
    # Another /64 (the next one up) has its own count.
    assert _login(client, "erin", "pw-erin-correct-1", "2001:db8:1:3::1") == 302


@pytest.mark.usefixtures("lockout")
def test_address_limit_across_a_64(client: Client) -> None:
    for n in range(4):
        assert _login(client, f"guess-{n}", "wrong", f"2001:db8:9:9::{n + 1}") == 200
    assert _login(client, "guess-4", "wrong", "2001:db8:9:9:1::1") == 429
    assert _login(client, "erin", "pw-erin-correct-1", "2001:db8:9:9:2::2") == 429
    assert _login(client, "erin", "pw-erin-correct-1", "2001:db8:9:a::1") == 302


# --------------------------------------------------------------------------------------------- 4: integer params
@pytest.mark.usefixtures("open_api", "locmem_cache")
@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/predictions?model=%C2%B2", "model"),  # "²": str.isdigit() is true, int() refuses it
        ("/api/v1/predictions?model=%D9%A3", "model"),  # Arabic-Indic three
        ("/api/v1/predictions?model=99999999999999999999999", "model"),  # beyond bigint
        ("/api/v1/predictions?model=-1", "model"),
        ("/api/v1/backtests?cursor=" + base64.urlsafe_b64encode(b"1:99999999999999999999999").decode(), "cursor"),
        ("/api/v1/backtests?limit=%C2%B2", "limit"),
    ],
)
def test_odd_integers_in_the_api_are_a_400_naming_the_parameter(client: Client, url: str, param: str) -> None:
    response = client.get(url)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


@pytest.mark.usefixtures("open_api")
@pytest.mark.parametrize("raw", ["%C2%B2", "%D9%A3", "99999999999999999999999", "-3", "1_0"])
def test_odd_model_ids_on_the_models_page_are_a_400_naming_id(client: Client, raw: str) -> None:
    response = client.get(f"/models/?id={raw}")
    assert response.status_code == 400
    assert "'id'" in response.content.decode()


# --------------------------------------------------------------------------------------------- 6: /healthz
@pytest.fixture
def stalled_consumer(settings: Any) -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{CONSUMER_METRICS_PREFIX}webhost-7.internal-4242"
    client.set(key, json.dumps({"stalled": True, "no_progress_s": 130.0, "assigned_partitions": 6}), ex=60)
    health.clear_cache()
    yield
    client.delete(key)
    client.close()
    health.clear_cache()


@pytest.mark.usefixtures("stalled_consumer")
def test_healthz_names_no_host_or_pid_and_details_only_for_staff(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "consumers": "stalled"}
    text = response.content.decode()
    assert "webhost" not in text
    assert "4242" not in text
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True))
    detailed = staff.get("/healthz").json()
    assert detailed["consumers"] == "stalled"
    assert "webhost-7.internal-4242" in detailed["detail"]["consumers"]["reason"]


# --------------------------------------------------------------------------------------------- 7: body limit
BIG = 3 * 1024 * 1024


def _oversized_json() -> bytes:
    return json.dumps({"strategy": "sma_cross", "symbol": "BTCUSDT", "pad": "x" * BIG}).encode()


@pytest.mark.usefixtures("open_api", "locmem_cache")
def test_an_oversized_api_body_is_a_413_json_error(client: Client, settings: Any) -> None:
    settings.REQUEST_BODY_MAX_BYTES = 1024 * 1024
    response = client.post("/api/v1/backtests", _oversized_json(), content_type="application/json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "1048576" in error["message"]
    # Under the limit the API answers as before (a 400 naming the missing field).
    small = client.post("/api/v1/backtests", json.dumps({"symbol": "BTCUSDT"}), content_type="application/json")
    assert small.status_code == 400


async def _asgi_post(path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    app = ApplicationCommunicator(application, scope)
    for n, chunk in enumerate(chunks):
        await app.send_input({"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1})
    start = await app.receive_output(timeout=30)
    body = b""
    while True:
        message = await app.receive_output(timeout=30)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(timeout=30)
    return int(start["status"]), body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("open_api", "locmem_cache")
async def test_a_chunked_body_without_content_length_is_cut_off_under_asgi(settings: Any) -> None:
    settings.REQUEST_BODY_MAX_BYTES = 1024 * 1024
    data = _oversized_json()
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    status, body = await _asgi_post("/api/v1/backtests", chunks, [])
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    # A declared length over the limit is refused before the body is read.
    status, body = await _asgi_post("/api/v1/backtests", [b"{}"], [(b"content-length", str(BIG).encode())])
    assert status == 413


@pytest.mark.integration
def test_real_daphne_answers_413_to_oversized_bodies_chunked_or_declared(spawn: Callable[..., ChildProcess]) -> None:
    port = free_port()
    server = spawn(
        [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "cryptoproject.asgi:application"],
        env=subprocess_env(DASHBOARD_LOGIN_REQUIRED="false", REQUEST_BODY_MAX_BYTES="1048576"),
        name="daphne",
    )
    wait_for(lambda: server.proc.poll() is not None or port_open(port), timeout=60, what="daphne to listen")
    assert server.proc.poll() is None, server.output()
    data = _oversized_json()
    for chunked in (True, False):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"}
            # An iterable body without a Content-Length goes out as Transfer-Encoding: chunked.
            body: Any = iter([data[i : i + 65536] for i in range(0, len(data), 65536)]) if chunked else data
            conn.request("POST", "/api/v1/backtests", body=body, headers=headers)
            response = conn.getresponse()
            assert response.status == 413, (chunked, response.status)
            assert json.loads(response.read())["error"]["code"] == "request_too_large"
        finally:
            conn.close()
