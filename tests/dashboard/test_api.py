"""REST API v1 against the real PostgreSQL: shapes, keyset pagination, errors naming the parameter, auth, throttles,
and the OpenAPI schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from analytics import payloads
from analytics.models import IndicatorPoint, Trade
from dashboard.api import serializers as s
from dashboard.api.pagination import Cursor
from tests.dashboard.api_factories import T0, locmem_cache, make_candles, make_stats, make_trades, make_whale

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]
__all__ = ["locmem_cache"]


def get(client: Client, path: str, **params: Any) -> Any:
    return client.get(f"/api/v1/{path}", params)


def assert_param_error(response: Any, param: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["param"] == param
    assert body["error"]["message"]


# --------------------------------------------------------------------------------------------- trades
def test_trades_shape_newest_first(client: Client) -> None:
    make_trades(5)
    body = get(client, "trades", exchange="binance", symbol="btcusdt").json()
    items = body["results"]
    assert [i["trade_id"] for i in items] == [5, 4, 3, 2, 1]
    assert set(items[0]) == set(s.TradeSerializer().fields) - {"trade_ref"}  # only for string ids (Bybit)
    first = items[-1]
    assert first["price"] == "61000.5"
    assert first["quantity"] == "0.01"
    assert first["quote_quantity"] == "610.005"
    assert first["is_buyer_maker"] is True
    assert first["side"] == "sell"
    assert first["t"] == int(T0.timestamp() * 1000)
    assert first["traded_at"] == T0.isoformat()
    assert body["next"] is None
    assert body["cursor"] is None


def test_trades_cursor_walks_every_trade_once(client: Client) -> None:
    # Ten trades share each timestamp, so the tie-breaker on trade_id matters.
    rows = []
    for i in range(230):
        rows.append(
            Trade(
                exchange="binance",
                symbol="ETHUSDT",
                trade_id=1000 + i,
                price=Decimal("2500"),
                quantity=Decimal("1"),
                is_buyer_maker=False,
                traded_at=T0 + timedelta(seconds=i // 10),
                received_at=T0,
            )
        )
    Trade.objects.bulk_create(rows)
    make_trades(20, symbol="BTCUSDT")  # another symbol never leaks in
    seen: list[int] = []
    params: dict[str, Any] = {"exchange": "binance", "symbol": "ETHUSDT", "limit": 37}
    pages = 0
    while True:
        body = get(client, "trades", **params).json()
        pages += 1
        seen.extend(i["trade_id"] for i in body["results"])
        if body["cursor"] is None:
            assert body["next"] is None
            break
        assert "cursor=" in body["next"]
        params["cursor"] = body["cursor"]
    assert pages == 7  # 230 / 37 -> 6 full pages and one of 8
    assert seen == sorted(range(1000, 1230), reverse=True)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"symbol": "BTCUSDT"}, "exchange"),
        ({"exchange": "binance"}, "symbol"),
        ({"exchange": "bitstamp", "symbol": "BTCUSDT"}, "exchange"),
        ({"exchange": "binance", "symbol": "BTC USDT;"}, "symbol"),
        ({"exchange": "binance", "symbol": "BTCUSDT", "limit": "0"}, "limit"),
        ({"exchange": "binance", "symbol": "BTCUSDT", "limit": "1001"}, "limit"),
        ({"exchange": "binance", "symbol": "BTCUSDT", "limit": "ten"}, "limit"),
        ({"exchange": "binance", "symbol": "BTCUSDT", "cursor": "not-a-cursor!"}, "cursor"),
    ],
)
def test_trades_bad_parameters(client: Client, params: dict[str, str], param: str) -> None:
    assert_param_error(get(client, "trades", **params), param)


def test_cursor_round_trip() -> None:
    cursor = Cursor(datetime(2024, 8, 9, 1, 2, 3, 456789, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor


# --------------------------------------------------------------------------------------------- candles, indicators
def test_candles_latest_oldest_first(client: Client) -> None:
    make_candles(30)
    items = get(client, "candles", exchange="binance", symbol="BTCUSDT", limit=10).json()["results"]
    assert len(items) == 10
    assert set(items[0]) == set(s.CandleSerializer().fields)
    assert [i["t"] for i in items] == sorted(i["t"] for i in items)
    assert items[-1]["open_time"] == (T0 + timedelta(minutes=29)).isoformat()
    assert items[-1]["open"] == "129"
    assert items[-1]["vwap"] == "101.25"
    assert items[-1]["trade_count"] == 10


def test_candles_range_iso_and_epoch_ms(client: Client) -> None:
    make_candles(30)
    start_ms = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    end_iso = (T0 + timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = get(client, "candles", exchange="binance", symbol="BTCUSDT", start=start_ms, end=end_iso).json()["results"]
    assert [i["open"] for i in items] == ["105", "106", "107", "108", "109"]
    # An unencoded "+00:00" offset arrives as a space; it is still understood.
    response = client.get("/api/v1/candles?exchange=binance&symbol=BTCUSDT&start=2024-08-09T00:28:00+00:00")
    assert [i["open"] for i in response.json()["results"]] == ["128", "129"]
    # A bare date means midnight UTC; end alone gives the latest candles up to it.
    items = get(client, "candles", exchange="binance", symbol="BTCUSDT", start="2024-08-09", limit=3).json()
    assert [i["open"] for i in items["results"]] == ["100", "101", "102"]
    items = get(client, "candles", exchange="binance", symbol="BTCUSDT", end=end_iso, limit=2).json()
    assert [i["open"] for i in items["results"]] == ["108", "109"]


def test_candles_other_interval_is_separate(client: Client) -> None:
    make_candles(3)
    assert get(client, "candles", exchange="binance", symbol="BTCUSDT", interval="5m").json()["results"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"interval": "2m"}, "interval"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-13-45T00:00:00Z"}, "end"),
        ({"start": "99"}, "start"),
        ({"start": "2024-08-10T00:00:00Z", "end": "2024-08-09T00:00:00Z"}, "start"),
        ({"limit": "5001"}, "limit"),
        ({"exchange": "nyse"}, "exchange"),
    ],
)
@pytest.mark.parametrize("endpoint", ["candles", "indicators"])
def test_series_bad_parameters(client: Client, endpoint: str, params: dict[str, str], param: str) -> None:
    query = {"exchange": "binance", "symbol": "BTCUSDT", **params}
    assert_param_error(get(client, endpoint, **query), param)


def test_indicators_shape(client: Client) -> None:
    make_candles(20)
    items = get(client, "indicators", exchange="binance", symbol="BTCUSDT").json()["results"]
    assert len(items) == 20
    assert set(items[0]) == set(s.IndicatorSerializer().fields)
    assert items[0]["sma"] == {}
    assert items[0]["rsi"] is None
    assert items[-1]["sma"] == {"7": "101.5"}
    assert items[-1]["ema"] == {"7": "101.7"}
    assert items[-1]["rsi"] == "55.5"


# --------------------------------------------------------------------------------------------- whales, stats, symbols
def test_whales_filters_and_pagination(client: Client) -> None:
    for i in range(12):
        make_whale(i + 1, notional=str(100000 + i * 50000), traded_at=T0 + timedelta(seconds=i // 3))
    make_whale(99, exchange="coinbase", symbol="BTC-USD", notional="900000", traded_at=T0 + timedelta(hours=1))
    body = get(client, "whales").json()
    assert [i["trade_id"] for i in body["results"]][:2] == [99, 12]
    assert set(body["results"][0]) == set(s.WhaleSerializer().fields)
    assert body["results"][0]["notional"] == "900000"

    big = get(client, "whales", exchange="binance", min_notional="500000").json()["results"]
    assert [i["trade_id"] for i in big] == [12, 11, 10, 9]

    seen: list[int] = []
    params: dict[str, Any] = {"symbol": "BTCUSDT", "limit": 5}
    while True:
        page = get(client, "whales", **params).json()
        seen.extend(i["trade_id"] for i in page["results"])
        if page["cursor"] is None:
            break
        params["cursor"] = page["cursor"]
    assert seen == list(range(12, 0, -1))


@pytest.mark.parametrize("value", ["lots", "-1", "NaN", "Infinity"])
def test_whales_bad_min_notional(client: Client, value: str) -> None:
    assert_param_error(get(client, "whales", min_notional=value), "min_notional")


def test_stats_and_symbols(client: Client) -> None:
    make_stats()
    make_stats("coinbase", "BTC-USD")
    make_trades(3, exchange="kraken", symbol="BTC/USD")
    stats = get(client, "stats").json()["results"]
    assert [(r["exchange"], r["symbol"]) for r in stats] == [("binance", "BTCUSDT"), ("coinbase", "BTC-USD")]
    assert set(stats[0]) == set(s.StatsSerializer().fields)
    assert stats[0]["last_price"] == "61837.63"
    assert stats[0]["change_pct"] == "3.0627"
    only = get(client, "stats", exchange="coinbase", symbol="btc-usd").json()["results"]
    assert [r["symbol"] for r in only] == ["BTC-USD"]
    symbols = get(client, "symbols").json()["results"]
    assert symbols == [
        {"exchange": "binance", "symbol": "BTCUSDT"},
        {"exchange": "coinbase", "symbol": "BTC-USD"},
        {"exchange": "kraken", "symbol": "BTC/USD"},
    ]


def test_empty_database_answers_empty_lists(client: Client) -> None:
    for endpoint in ("stats", "symbols", "whales"):
        assert get(client, endpoint).json()["results"] == []


# --------------------------------------------------------------------------------------------- auth, throttles
@pytest.fixture
def login_required(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True


@pytest.mark.usefixtures("login_required")
@pytest.mark.parametrize("endpoint", ["trades", "candles", "indicators", "whales", "stats", "symbols", "health"])
def test_anonymous_refused_when_login_required(client: Client, endpoint: str) -> None:
    response = get(client, endpoint, exchange="binance", symbol="BTCUSDT")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.usefixtures("login_required")
def test_schema_and_docs_need_login_too(client: Client) -> None:
    assert client.get("/api/v1/schema").status_code in {401, 403}
    assert client.get("/api/v1/docs").status_code in {401, 403}


@pytest.mark.usefixtures("login_required")
def test_token_from_drf_create_token_authenticates(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    get_user_model().objects.create_user("alice", password="pw-alice-123")
    call_command("drf_create_token", "alice")
    key = Token.objects.get(user__username="alice").key
    assert key in capsys.readouterr().out
    make_stats()
    response = client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response.json()["results"][0]["symbol"] == "BTCUSDT"
    bad = client.get("/api/v1/stats", HTTP_AUTHORIZATION="Token not-a-real-key")
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "authentication_failed"


@pytest.mark.usefixtures("login_required")
def test_session_login_authenticates(client: Client) -> None:
    get_user_model().objects.create_user("bob", password="pw-bob-123")
    assert client.login(username="bob", password="pw-bob-123")
    assert get(client, "symbols").status_code == 200


def test_open_when_login_not_required(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert get(client, "symbols").status_code == 200


def test_throttle_returns_429(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "3/min", "user": "3/min"})
    codes = [get(client, "symbols").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    response = get(client, "symbols")
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_unknown_route_is_404(client: Client) -> None:
    assert client.get("/api/v1/nope").status_code == 404


# --------------------------------------------------------------------------------------------- schema and docs
def test_schema_is_openapi_3_with_every_endpoint(client: Client) -> None:
    response = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for endpoint in ("trades", "candles", "indicators", "whales", "stats", "symbols", "health"):
        assert f"/api/v1/{endpoint}" in schema["paths"]
    trade_params = {p["name"]: p for p in schema["paths"]["/api/v1/trades"]["get"]["parameters"]}
    assert trade_params["symbol"]["required"] is True
    assert "cursor" in trade_params


def test_spectacular_validate_passes(tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/whales" in out.read_text()


def test_docs_render_from_local_static_files(client: Client) -> None:
    for path in ("/api/v1/docs", "/api/v1/redoc"):
        response = client.get(path)
        assert response.status_code == 200
        html = response.content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        assert "cdn.jsdelivr.net" not in html


def test_exception_handler_envelope_for_other_errors() -> None:
    from rest_framework.exceptions import NotFound, ValidationError

    from dashboard.api.errors import api_exception_handler

    nested = api_exception_handler(ValidationError({"start": ["bad date"]}), {})
    assert nested is not None
    assert nested.status_code == 400
    assert nested.data == {"error": {"param": "start", "message": "bad date", "code": "invalid"}}
    flat = api_exception_handler(ValidationError(["just wrong"]), {})
    assert flat is not None
    assert flat.data["error"]["param"] is None
    assert flat.data["error"]["message"] == "just wrong"
    missing = api_exception_handler(NotFound(), {})
    assert missing is not None
    assert missing.status_code == 404
    assert missing.data["error"]["code"] == "not_found"
    assert api_exception_handler(ValueError("not an API error"), {}) is None


def test_indicator_series_tolerates_non_dict_json() -> None:
    point = IndicatorPoint(exchange="binance", symbol="BTCUSDT", interval="1m", open_time=T0, sma=["7", "25"])
    point.ema = {"7": "1.50", "25": None}
    item = payloads.indicator_point_item(point)
    assert item["sma"] == {}
    assert item["ema"] == {"7": "1.5"}


def test_deep_pages_seek_through_the_index(client: Client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_trades(30)
    first = get(client, "trades", exchange="binance", symbol="BTCUSDT", limit=10).json()
    with CaptureQueriesContext(connection) as captured:
        get(client, "trades", exchange="binance", symbol="BTCUSDT", limit=10, cursor=first["cursor"])
    sql = next(q["sql"] for q in captured.captured_queries if "analytics_trade" in q["sql"])
    with connection.cursor() as cursor:
        # A 30-row table would be scanned (or bitmap-scanned through the BRIN index, depending on the planner's
        # statistics): ask whether the keyset condition can seek through the symbol/time B-tree.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
        cursor.execute("RESET enable_bitmapscan")
    # each partition's copy of the natural key's index (exchange, symbol, traded_at, trade_id), its name cut to 63
    assert "_exchange_symbol_traded_at_trade" in plan, plan
    assert "traded_at <=" in plan.split("Index Cond:")[1].splitlines()[0]
