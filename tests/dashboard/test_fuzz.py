"""Hypothesis-fuzzed query parameters for every API endpoint and fuzzed WebSocket route parameters, on
the real PostgreSQL and Redis. The promise: a bad parameter is a 400 naming it (or a refused socket), never a 500.

Each test counts the cases it ran and prints the count (``pytest -s`` shows it).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptoproject.asgi import application
from dashboard.consumers import CLOSE_BAD_MARKET
from tests.dashboard.api_factories import locmem_cache, make_candles, make_stats, make_trades, make_whale

__all__ = ["locmem_cache"]

API_EXAMPLES = 250
WS_EXAMPLES = 150
COUNTS: dict[str, int] = {}

# What the parameters look like when people (or scanners) send them: real values, near misses, numbers in every
# notation, Unicode digits, control characters, very long strings, and anything at all.
_NEAR = [
    "binance",
    "BINANCE",
    "kraken",
    "BTCUSDT",
    "btc-usd",
    "BTC/USD",
    "1m",
    "1d",
    "0",
    "-1",
    "--1",
    "²",
    "١٢٣",
    "1_000",
    "1e999999",
    "NaN",
    "Infinity",
    "-0",
    "99999999999999999999999999",
    "2024-08-09",
    "2024-08-09T00:00:00Z",
    "2024-08-09T00:00:00+00:00",
    "2024-08-09T00:00:00 00:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "1723161255342",
    "%00",
    "\x00",
    "' OR 1=1 --",
    "MjAyNDox",
    "OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ojk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
]
NEAR = st.sampled_from(_NEAR)
VALUES = st.one_of(
    NEAR,
    NEAR,
    NEAR,
    NEAR.map(lambda v: v + v),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=80),
    st.text(alphabet=string.printable, max_size=300),
)
NAMES = ["exchange", "symbol", "interval", "start", "end", "limit", "cursor", "min_notional", "format", "page"]
FUZZED = st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6)
# Most cases start from a valid market, so the parameters after the required ones are reached too.
ON_A_MARKET = st.builds(
    lambda fuzzed: {"exchange": "binance", "symbol": "BTCUSDT", **fuzzed},
    st.fixed_dictionaries({}, optional={n: VALUES for n in NAMES if n not in {"exchange", "symbol"}}),
)
QUERIES = st.one_of(FUZZED, ON_A_MARKET, ON_A_MARKET)

ENDPOINTS = ["trades", "candles", "indicators", "whales", "stats", "symbols", "health", "schema"]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    for name, count in sorted(COUNTS.items()):
        print(f"fuzz cases {name}: {count}")
    print(f"fuzz cases total: {sum(COUNTS.values())}")


@pytest.fixture
def api_data(db: Any, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    make_trades(30)
    make_candles(30)
    make_stats()
    for i in range(5):
        make_whale(i + 1)


@pytest.mark.django_db
@pytest.mark.usefixtures("api_data", "locmem_cache")
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_api_query_parameters_never_give_a_server_error(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "100000/min", "user": "100000/min"})
    client = Client()
    examples = API_EXAMPLES if endpoint not in {"health", "schema"} else 15

    def check_one(query: dict[str, str]) -> None:
        COUNTS[endpoint] = COUNTS.get(endpoint, 0) + 1
        response = client.get(f"/api/v1/{endpoint}?{urlencode(query)}")
        status = response.status_code
        # DRF's content negotiation answers an unknown ?format= with 404 (not a parameter of ours).
        assert status in {200, 400} or (status == 404 and "format" in query), (query, status, response.content[:500])
        if status == 400:
            error = response.json()["error"]
            assert error["param"] in {*query, "exchange", "symbol"}, (query, error)  # given, or required
            assert error["message"]

    # Every near miss in every parameter on a valid market (deterministic), then hypothesis's own mixes.
    for name in NAMES:
        for value in _NEAR:
            check_one({"exchange": "binance", "symbol": "BTCUSDT", name: value})

    @settings_(max_examples=examples)
    @given(query=QUERIES)
    def check(query: dict[str, str]) -> None:
        check_one(query)

    check()


SEGMENT = st.one_of(
    st.sampled_from(["binance", "coinbase", "kraken", "BTCUSDT", "BTC-USD", "BTC/USD", "eth.usdt", "..", "%2F"]),
    st.text(min_size=1, max_size=40),
    st.text(alphabet=string.ascii_letters + string.digits + "-/._~%", min_size=1, max_size=70),
)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
async def test_websocket_route_parameters_never_crash_the_consumer(settings: Any) -> None:
    """Hypothesis draws the paths; they are then tried in this test's event loop (the channel layer's Redis
    connections belong to one loop)."""
    settings.DASHBOARD_LOGIN_REQUIRED = False
    paths: list[str] = []

    @settings_(max_examples=WS_EXAMPLES)
    @given(exchange=SEGMENT, symbol=SEGMENT, encode=st.booleans())
    def draw(exchange: str, symbol: str, encode: bool) -> None:
        parts = (quote(exchange, safe=""), quote(symbol, safe="/")) if encode else (exchange, symbol)
        paths.append(f"/ws/market/{parts[0]}/{parts[1]}/")

    draw()
    paths.extend(["/ws/market/binance/BTCUSDT/", "/ws/nothing/", "/ws/market/binance/", "/other"])
    outcomes = {"accepted": 0, "refused": 0}
    for path in paths:
        COUNTS["websocket"] = COUNTS.get("websocket", 0) + 1
        comm = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1")])
        connected, code = await comm.connect(timeout=10)
        if connected:
            outcomes["accepted"] += 1
            await comm.disconnect()
        else:
            assert code == CLOSE_BAD_MARKET, (path, code)
            outcomes["refused"] += 1
    print(f"websocket outcomes: {outcomes}")
    assert outcomes["accepted"] > 0
    assert outcomes["refused"] > 0


def settings_(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
