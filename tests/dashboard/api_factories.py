"""Row builders and fixtures shared by the API, admin, alert and health tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from analytics.models import Candle, IndicatorPoint, SymbolStats, Trade, WhaleAlert

T0 = datetime(2024, 8, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def locmem_cache(settings: Any) -> Iterator[None]:
    """DRF throttles count in the default cache: a private in-memory one keeps tests independent."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "e"}}
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def make_trades(
    n: int,
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    start: datetime = T0,
    step: timedelta = timedelta(milliseconds=250),
    first_id: int = 1,
) -> list[Trade]:
    """``n`` trades, one every ``step``, with ids ``first_id..`` (bulk-inserted)."""
    rows = [
        Trade(
            exchange=exchange,
            symbol=symbol,
            trade_id=first_id + i,
            price=Decimal("61000.5") + i,
            quantity=Decimal("0.01000000"),
            is_buyer_maker=i % 2 == 0,
            traded_at=start + step * i,
            received_at=start + step * i + timedelta(milliseconds=5),
        )
        for i in range(n)
    ]
    return Trade.objects.bulk_create(rows, batch_size=5000)


def make_candles(n: int, exchange: str = "binance", symbol: str = "BTCUSDT", interval: str = "1m") -> None:
    """``n`` consecutive 1m candles from ``T0`` with indicators for each."""
    Candle.objects.bulk_create(
        Candle(
            exchange=exchange,
            symbol=symbol,
            interval=interval,
            open_time=T0 + timedelta(minutes=i),
            open=Decimal("100") + i,
            high=Decimal("110") + i,
            low=Decimal("90") + i,
            close=Decimal("105") + i,
            volume=Decimal("2.5"),
            quote_volume=Decimal("250"),
            trade_count=10,
            vwap=Decimal("101.25"),
        )
        for i in range(n)
    )
    IndicatorPoint.objects.bulk_create(
        IndicatorPoint(
            exchange=exchange,
            symbol=symbol,
            interval=interval,
            open_time=T0 + timedelta(minutes=i),
            sma={"7": "101.5"} if i >= 6 else {},
            ema={"7": "101.7"} if i >= 6 else {},
            rsi=Decimal("55.5") if i >= 14 else None,
        )
        for i in range(n)
    )


def make_whale(
    trade_id: int,
    notional: str = "250000",
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    traded_at: datetime = T0,
) -> WhaleAlert:
    """One whale alert."""
    price = Decimal("62500")
    return WhaleAlert.objects.create(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        quantity=Decimal(notional) / price,
        notional=Decimal(notional),
        side="buy",
        threshold=Decimal("100000"),
        traded_at=traded_at,
    )


def make_stats(exchange: str = "binance", symbol: str = "BTCUSDT") -> SymbolStats:
    """One 24h statistics row."""
    return SymbolStats.objects.create(
        exchange=exchange,
        symbol=symbol,
        last_price=Decimal("61837.63"),
        open_price=Decimal("60000"),
        change_pct=Decimal("3.0627"),
        high=Decimal("62000"),
        low=Decimal("59000"),
        volume=Decimal("1234.5"),
        quote_volume=Decimal("76000000"),
        trade_count=99000,
        last_trade_at=T0,
    )


class Receiver:
    """A local webhook receiver (``http.server`` in a thread) that answers with scripted status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        import http.server
        import threading

        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "status": status,
                            "delivery": self.headers.get("X-Alert-Delivery"),
                            "content_type": self.headers.get("Content-Type"),
                            "host": self.headers.get("Host"),
                        }
                    )
                self.send_response(status)
                if status in {301, 302}:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def accepted(self) -> list[dict[str, Any]]:
        """Requests answered with 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running :class:`Receiver`, stopped afterwards."""
    r = Receiver()
    yield r
    r.close()
