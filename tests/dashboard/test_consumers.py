"""Channels consumers through the real Redis channel layer and the project's ASGI stack (origin check, auth)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from analytics import live, payloads
from analytics.groups import OVERVIEW_GROUP, WHALES_GROUP, market_group
from analytics.models import Candle
from cryptoproject.asgi import application
from dashboard.consumers import CLOSE_BAD_MARKET, CLOSE_UNAUTHENTICATED
from ingest.records import TradeRecord

ORIGIN = (b"origin", b"http://127.0.0.1")
# The auth middleware reads the session from the database in a worker thread: transactional tests.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The consumers forward any payload unchanged: these tests push partial ones, so the typed signatures are relaxed.
publish: Callable[[str, Any], bool] = cast(Any, live.publish)
publish_many: Callable[[list[tuple[str, Any]]], int] = cast(Any, live.publish_many)


def fresh_symbol() -> str:
    """A symbol no other test (or parallel run) listens to, so group traffic cannot leak between tests."""
    return f"T{uuid.uuid4().hex[:10].upper()}USDT"


def socket(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])


def trades_payload(symbol: str, trade_id: int = 1) -> dict[str, Any]:
    record = TradeRecord("binance", symbol, trade_id, "61837.63", "0.02", True, 1723161255342, 1723161255342, 0)
    return dict(payloads.trades_push("binance", symbol, [payloads.trade_item_from_record(record)]))


@pytest_asyncio.fixture(autouse=True)
async def consumers_end_within_the_test() -> AsyncIterator[None]:
    """Every consumer the test started has ended before its event loop closes.

    A refused socket's consumer keeps its channel-layer receive loop running (channels starts it before
    ``connect``). At the end of a test pytest-asyncio cancels such tasks once and waits for them without a limit. A
    cancel that lands while redis-py 8.1 sets up a fresh Redis connection for the receive (its ``CLIENT
    MAINT_NOTIFICATIONS`` / ``SETINFO`` handshake) is lost: a probe saw the handshake's replies read with the task
    already cancelling, then BZPOPMIN return ``None`` after its 5 s, and the loop go on. The test then hung until
    pytest-timeout (300 s), about one run in eight of this module. A later cancel is delivered (the connection is
    up by then), so cancel again until every task has ended.
    """
    yield
    me = asyncio.current_task()
    pending = {task for task in asyncio.all_tasks() if task is not me}
    deadline = asyncio.get_running_loop().time() + 30
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    assert not pending, f"tasks still running after 30 s of cancels: {pending}"


@pytest.fixture
def open_dashboard(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


async def test_market_push_arrives_and_other_symbol_stays_silent(open_dashboard: None) -> None:
    symbol, other = fresh_symbol(), fresh_symbol()
    comm = socket(f"/ws/market/binance/{symbol}/")
    connected, _ = await comm.connect()
    assert connected
    try:
        payload = trades_payload(symbol, 42)
        sent = await sync_to_async(publish_many)(
            [(market_group("binance", other), trades_payload(other)), (market_group("binance", symbol), payload)]
        )
        assert sent == 2
        # Exactly the payload, unchanged; the other symbol's push never shows up.
        assert await comm.receive_json_from(timeout=5) == payload
        assert await comm.receive_nothing(timeout=0.5)
    finally:
        await comm.disconnect()


async def test_each_kind_is_forwarded_unchanged(open_dashboard: None) -> None:
    symbol = fresh_symbol()
    comm = socket(f"/ws/market/binance/{symbol.lower()}/")
    connected, _ = await comm.connect()
    assert connected
    group = market_group("binance", symbol)
    candle = Candle(
        interval="1m",
        open_time=datetime(2024, 8, 9, tzinfo=UTC),
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        volume=Decimal("3"),
        quote_volume=Decimal("4"),
        trade_count=2,
        vwap=Decimal("1.2"),
    )
    pushes: list[dict[str, Any]] = [
        dict(payloads.candles_push("binance", symbol, [payloads.candle_item(candle)], [])),
        {"kind": "stats", "exchange": "binance", "symbol": symbol, "last_price": "1.5", "change_pct": "-2.5"},
        {"kind": "whales", "alerts": [{"exchange": "binance", "symbol": symbol, "trade_id": 7, "notional": "427000"}]},
    ]
    try:
        assert await sync_to_async(publish_many)([(group, p) for p in pushes]) == 3
        received = [await comm.receive_json_from(timeout=5) for _ in pushes]
        assert received == pushes
        # A client message is ignored (one-way socket): the connection stays open and silent.
        await comm.send_json_to({"hello": "server"})
        assert await comm.receive_nothing(timeout=0.3)
    finally:
        await comm.disconnect()


async def test_kraken_symbol_with_slash(open_dashboard: None) -> None:
    base = uuid.uuid4().hex[:6].upper()
    symbol = f"{base}/USD"
    comm = socket(f"/ws/market/kraken/{symbol}/")
    connected, _ = await comm.connect()
    assert connected
    try:
        payload = trades_payload(symbol) | {"exchange": "kraken"}
        assert await sync_to_async(publish)(market_group("kraken", symbol), payload)
        assert await comm.receive_json_from(timeout=5) == payload
    finally:
        await comm.disconnect()


async def test_whales_and_overview_groups(open_dashboard: None) -> None:
    whales = socket("/ws/whales/")
    overview = socket("/ws/overview/")
    assert (await whales.connect())[0]
    assert (await overview.connect())[0]
    marker = uuid.uuid4().hex
    try:
        whale = {"kind": "whales", "alerts": [{"exchange": "binance", "symbol": "BTCUSDT", "trade_id": marker}]}
        stats = {"kind": "stats", "exchange": "binance", "symbol": marker, "last_price": "1"}
        await sync_to_async(publish_many)([(WHALES_GROUP, whale), (OVERVIEW_GROUP, stats)])
        # Other tests may push to these shared groups at the same time: look for ours.
        assert await _receive_until(whales, lambda m: m["alerts"][0]["trade_id"] == marker) == whale
        assert await _receive_until(overview, lambda m: m.get("symbol") == marker) == stats
    finally:
        await whales.disconnect()
        await overview.disconnect()


async def _receive_until(comm: WebsocketCommunicator, match: Any, limit: int = 50) -> dict[str, Any]:
    for _ in range(limit):
        message = await comm.receive_json_from(timeout=5)
        if match(message):
            return message
    raise AssertionError("expected push never arrived")


@pytest.mark.parametrize(
    "path",
    [
        "/ws/market/nasdaq/BTCUSDT/",
        "/ws/market/binance/BTC%20USDT/",
        "/ws/market/binance/BTC--USDT/",
        "/ws/market/binance/" + "A" * 40 + "/",
    ],
)
async def test_bad_market_is_refused(open_dashboard: None, path: str) -> None:
    comm = socket(path)
    connected, code = await comm.connect()
    assert not connected
    assert code == CLOSE_BAD_MARKET


async def test_login_required_refuses_anonymous_socket(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    for path in ("/ws/market/binance/BTCUSDT/", "/ws/whales/", "/ws/overview/"):
        comm = socket(path)
        connected, code = await comm.connect()
        assert not connected, path
        assert code == CLOSE_UNAUTHENTICATED


async def test_login_required_accepts_a_logged_in_session(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    user = await get_user_model().objects.acreate(username=f"ws-{uuid.uuid4().hex[:8]}")
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    symbol = fresh_symbol()
    comm = socket(f"/ws/market/binance/{symbol}/", (b"cookie", cookie))
    connected, _ = await comm.connect()
    assert connected
    try:
        payload = trades_payload(symbol)
        await sync_to_async(publish)(market_group("binance", symbol), payload)
        assert await comm.receive_json_from(timeout=5) == payload
    finally:
        await comm.disconnect()


async def test_foreign_origin_is_refused(open_dashboard: None) -> None:
    comm = WebsocketCommunicator(application, "/ws/whales/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.slow
async def test_idle_socket_survives_the_redis_read_timeout(open_dashboard: None) -> None:
    """A quiet symbol: nothing for longer than channels_redis's 5 s BZPOPMIN, then a push still arrives.

    redis-py 8 defaults to a 5 s socket timeout; without the margin in CHANNEL_LAYERS the consumer dies here.
    """
    symbol = fresh_symbol()
    comm = socket(f"/ws/market/binance/{symbol}/")
    assert (await comm.connect())[0]
    try:
        assert await comm.receive_nothing(timeout=7, interval=0.5)
        payload = trades_payload(symbol)
        assert await sync_to_async(publish)(market_group("binance", symbol), payload)
        assert await comm.receive_json_from(timeout=5) == payload
    finally:
        await comm.disconnect()


# --------------------------------------------------------------------------------------------- review of issue 22
async def test_non_json_and_binary_frames_get_an_error_frame_and_the_socket_stays_up(open_dashboard: None) -> None:
    symbol = fresh_symbol()
    comm = socket(f"/ws/market/binance/{symbol}/")
    assert (await comm.connect())[0]
    try:
        await comm.send_to(text_data="this is not JSON {")
        error = await comm.receive_json_from(timeout=5)
        assert error["error"]["code"] == "invalid_frame"
        await comm.send_to(bytes_data=b"\x00\x01\xff binary")
        error = await comm.receive_json_from(timeout=5)
        assert error["error"]["code"] == "invalid_frame"
        await comm.send_json_to({"a": "valid but ignored"})
        assert await comm.receive_nothing(timeout=0.5)
        # Still subscribed: a push arrives after the bad frames.
        payload = trades_payload(symbol)
        await sync_to_async(publish)(market_group("binance", symbol), payload)
        assert await comm.receive_json_from(timeout=5) == payload
    finally:
        await comm.disconnect()


async def test_logout_closes_the_sessions_open_sockets(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    user = await get_user_model().objects.acreate(username=f"ws-{uuid.uuid4().hex[:8]}")
    browser, other_browser = Client(), Client()
    await sync_to_async(browser.force_login)(user)
    await sync_to_async(other_browser.force_login)(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    other_cookie = f"sessionid={other_browser.cookies['sessionid'].value}".encode()
    market = socket(f"/ws/market/binance/{fresh_symbol()}/", (b"cookie", cookie))
    whales = socket("/ws/whales/", (b"cookie", cookie))
    elsewhere = socket("/ws/overview/", (b"cookie", other_cookie))
    for comm in (market, whales, elsewhere):
        assert (await comm.connect())[0]
    try:
        response = await sync_to_async(browser.post)("/accounts/logout/")
        assert response.status_code == 302
        for comm in (market, whales):
            closed = await comm.receive_output(timeout=5)
            assert closed == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}
        # The user's other session was not logged out: its socket stays open.
        assert await elsewhere.receive_nothing(timeout=0.5)
    finally:
        for comm in (market, whales, elsewhere):
            await comm.disconnect()
