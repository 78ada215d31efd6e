"""``GET /api/v1/book`` and ``/api/v1/book/metrics`` on the real PostgreSQL: shapes, ``at``, the newest without it,
404 without a stored book, and 400s naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from books.models import BookMetric, BookSnapshot
from dashboard.api.books import BookMetricSerializer, BookSerializer
from tests.dashboard.api_factories import locmem_cache

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]
__all__ = ["locmem_cache"]

W0 = datetime(2024, 8, 9, 0, 0, tzinfo=UTC)
MS0 = int(W0.timestamp() * 1000)


def get(client: Client, path: str, **params: Any) -> Any:
    return client.get(f"/api/v1/{path}", params)


def assert_param_error(response: Any, param: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def snapshots() -> None:
    # Windows of 10 s: the first ends at +9.5 s, the second at +17 s, the third broke at +25 s.
    for i, (t, valid, bid) in enumerate([(9_500, True, "61000.10000000"), (17_000, True, "61001.00000000"),
                                         (25_000, False, None)]):  # fmt: skip
        BookSnapshot.objects.create(
            exchange="binance", symbol="BTCUSDT", window_start=W0 + timedelta(seconds=10 * i), t=MS0 + t,
            last_id=100 + i if valid else None, valid=valid,
            bids=[[bid, "0.50000000"], ["60999.00000000", "1.00000000"]] if bid else [],
            asks=[["61002.00000000", "2.00000000"]] if bid else [], source_offset=i,
        )  # fmt: skip


def test_book_newest_without_at_and_the_one_at_or_before_at(client: Client) -> None:
    snapshots()
    newest = get(client, "book", exchange="binance", symbol="BTCUSDT").json()
    assert newest == {"exchange": "binance", "symbol": "BTCUSDT", "t": MS0 + 25_000, "valid": False, "bids": [],
                      "asks": []}  # fmt: skip
    assert set(newest) == set(BookSerializer().fields)
    at_15s = get(client, "book", exchange="binance", symbol="btcusdt", at=str(MS0 + 15_000)).json()
    # The second window's book ends at +17 s, after `at`: the first window's is the one at or before it.
    assert at_15s["t"] == MS0 + 9_500
    assert at_15s["bids"] == [["61000.10000000", "0.50000000"], ["60999.00000000", "1.00000000"]]
    assert at_15s["asks"] == [["61002.00000000", "2.00000000"]]
    at_17s = get(client, "book", exchange="binance", symbol="BTCUSDT", at="2024-08-09T00:00:17Z").json()
    assert (at_17s["t"], at_17s["valid"], at_17s["bids"][0][0]) == (MS0 + 17_000, True, "61001.00000000")
    before = get(client, "book", exchange="binance", symbol="BTCUSDT", at=str(MS0 + 9_000))
    assert before.status_code == 404
    assert before.json()["error"]["code"] == "not_found"
    assert get(client, "book", exchange="binance", symbol="ETHUSDT").status_code == 404


def test_book_bad_parameters_are_400_naming_the_parameter(client: Client) -> None:
    assert_param_error(get(client, "book", symbol="BTCUSDT"), "exchange")
    assert_param_error(get(client, "book", exchange="nope", symbol="BTCUSDT"), "exchange")
    assert_param_error(get(client, "book", exchange="binance"), "symbol")
    assert_param_error(get(client, "book", exchange="binance", symbol="BTCUSDT", at="yesterday"), "at")
    assert_param_error(get(client, "book", exchange="binance", symbol="BTCUSDT", at="99"), "at")
    assert_param_error(get(client, "book/metrics", exchange="binance"), "symbol")
    reversed_range = get(client, "book/metrics", exchange="binance", symbol="X", start="2024-08-10", end="2024-08-09")
    assert_param_error(reversed_range, "start")
    assert_param_error(get(client, "book/metrics", exchange="binance", symbol="X", limit="0"), "limit")
    assert_param_error(get(client, "book/metrics", exchange="binance", symbol="X", end="soon"), "end")


def test_book_metrics_series_oldest_first_within_start_and_end(client: Client) -> None:
    for i in range(5):
        BookMetric.objects.create(
            exchange="binance", symbol="BTCUSDT", second=W0 + timedelta(seconds=i), t=MS0 + 1000 * i + 900,
            last_id=i, valid=i != 3, best_bid=Decimal("61000.100000000000") if i != 3 else None,
            best_ask=Decimal("61000.200000000000") if i != 3 else None, imbalance=Decimal("-0.25") if i != 3 else None,
            source_offset=i,
        )  # fmt: skip
    body = get(client, "book/metrics", exchange="binance", symbol="BTCUSDT", start=str(MS0 + 1000),
               end="2024-08-09T00:00:03Z").json()  # fmt: skip
    items = body["results"]
    assert [i["t"] for i in items] == [MS0 + 1000, MS0 + 2000, MS0 + 3000]
    assert set(items[0]) == set(BookMetricSerializer().fields)
    assert items[0]["last_update_t"] == MS0 + 1900
    assert (items[0]["best_bid"], items[0]["best_ask"], items[0]["imbalance"]) == ("61000.1", "61000.2", "-0.25")
    assert items[0]["spread"] is None  # not set in this row
    assert (items[2]["valid"], items[2]["best_bid"]) == (False, None)
    latest = get(client, "book/metrics", exchange="binance", symbol="BTCUSDT", limit="2").json()["results"]
    assert [i["t"] for i in latest] == [MS0 + 3000, MS0 + 4000]


def test_the_book_endpoints_are_in_the_openapi_schema(client: Client) -> None:
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    book = schema["paths"]["/api/v1/book"]["get"]
    assert {p["name"] for p in book["parameters"]} == {"exchange", "symbol", "at"}
    metrics = schema["paths"]["/api/v1/book/metrics"]["get"]
    assert {p["name"] for p in metrics["parameters"]} == {"exchange", "symbol", "start", "end", "limit"}
    assert "400" in book["responses"]
