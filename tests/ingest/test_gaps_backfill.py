"""Gap tracking and the Binance REST backfill client (against a local HTTP server speaking the endpoint)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from ingest.backfill import BackfillWorker, _retry_after
from ingest.exchanges.binance.backfill import REQUEST_WEIGHT, BinanceBackfiller
from ingest.gaps import DUPLICATE, GAP, NEXT, Gap, TradeIdContinuity
from ingest.metrics import IngestMetrics

pytestmark = pytest.mark.unit

BASE_TIME = 1_723_161_255_342


def test_tracker_classifies_ids() -> None:
    tracker = TradeIdContinuity()
    assert tracker.check("BTCUSDT", 10) == NEXT
    assert tracker.check("BTCUSDT", 11) == NEXT
    assert tracker.check("BTCUSDT", 11) == DUPLICATE
    assert tracker.check("BTCUSDT", 5) == DUPLICATE
    assert tracker.check("ETHUSDT", 500) == NEXT  # symbols are independent
    assert tracker.check("BTCUSDT", 15) == GAP
    assert tracker.gap == Gap("BTCUSDT", 12, 14)
    assert tracker.gap.size == 3
    assert tracker.last["BTCUSDT"] == 11  # nothing recorded until the caller advances
    assert tracker.advance("BTCUSDT", 12)
    assert tracker.advance("BTCUSDT", 14)
    assert not tracker.advance("BTCUSDT", 13)
    assert tracker.advance("BTCUSDT", 15)
    assert tracker.check("BTCUSDT", 16) == NEXT
    assert tracker.advance("NEW", 1)
    assert tracker.last["NEW"] == 1


class FakeBinanceRest(BaseHTTPRequestHandler):
    """historicalTrades over ids 1000..2999 with scripted failures (a real HTTP server, not a mock)."""

    script: list[tuple[int, dict[str, str]]] = []
    requests: list[dict[str, list[str]]] = []
    bad_ids: set[int] = set()
    body: bytes | None = None  # answer this instead of trades

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        type(self).requests.append(query)
        if url.path != "/api/v3/historicalTrades":
            self.send_error(404)
            return
        if self.script:
            status, headers = self.script.pop(0)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(b'{"code":-1003,"msg":"Too many requests"}')
            return
        if self.body is not None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.body)
            return
        start, limit = int(query["fromId"][0]), int(query["limit"][0])
        rows: list[Any] = []
        for trade_id in range(max(start, 1000), min(start + limit, 3000)):
            row: dict[str, Any] = {
                "id": trade_id,
                "price": f"{60000 + trade_id % 7}.01000000",
                "qty": "0.00100000",
                "quoteQty": "60.00001",
                "time": BASE_TIME + trade_id,
                "isBuyerMaker": trade_id % 2 == 0,
                "isBestMatch": True,
            }
            if trade_id in self.bad_ids:
                row["price"] = "-1"
            rows.append(row)
        body = orjson.dumps(rows)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-MBX-USED-WEIGHT-1M", str(REQUEST_WEIGHT * len(self.requests)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def rest() -> Iterator[str]:
    FakeBinanceRest.script = []
    FakeBinanceRest.requests = []
    FakeBinanceRest.bad_ids = set()
    FakeBinanceRest.body = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBinanceRest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_backfill_pages_through_a_range_in_order(rest: str) -> None:
    waits: list[float] = []
    backfiller = BinanceBackfiller(rest, sleep=waits.append)
    result = backfiller.fetch("btcusdt", 1005, 2994)  # 1,990 trades: two pages
    assert result.complete
    assert result.bad == []
    assert [t.trade_id for t in result.trades] == list(range(1005, 2995))
    first = result.trades[0]
    assert (first.symbol, first.price, first.quantity, first.is_buyer_maker) == (
        "BTCUSDT",
        "60004.01000000",
        "0.00100000",
        False,
    )
    assert [q["limit"] for q in FakeBinanceRest.requests] == [["1000"], ["990"]]
    assert FakeBinanceRest.requests[0]["symbol"] == ["BTCUSDT"]
    assert FakeBinanceRest.requests[1]["fromId"] == ["2005"]
    assert waits == []
    assert backfiller.used_weight == 2 * REQUEST_WEIGHT


def test_backfill_respects_429_and_418_retry_after(rest: str) -> None:
    FakeBinanceRest.script = [(429, {"Retry-After": "3"}), (418, {"Retry-After": "7"}), (503, {})]
    waits: list[float] = []
    result = BinanceBackfiller(rest, sleep=waits.append).fetch("BTCUSDT", 1000, 1001)
    assert [t.trade_id for t in result.trades] == [1000, 1001]
    assert result.complete
    assert waits[:2] == [3.0, 7.0]
    assert len(waits) == 3


def test_backfill_gives_up_and_says_so(rest: str) -> None:
    FakeBinanceRest.script = [(500, {})] * 3
    result = BinanceBackfiller(rest, attempts=3, sleep=lambda _s: None).fetch("BTCUSDT", 1000, 1001)
    assert not result.complete
    assert result.trades == []
    FakeBinanceRest.script = [(400, {})]
    assert not BinanceBackfiller(rest, sleep=lambda _s: None).fetch("BTCUSDT", 1000, 1001).complete


def test_backfill_unreachable_server() -> None:
    waits: list[float] = []
    result = BinanceBackfiller("http://127.0.0.1:9", attempts=2, timeout=1, sleep=waits.append).fetch("X", 1, 2)
    assert not result.complete
    assert len(waits) == 2


def test_backfill_stops_when_the_exchange_has_nothing(rest: str) -> None:
    result = BinanceBackfiller(rest, sleep=lambda _s: None).fetch("BTCUSDT", 2990, 3100)
    assert [t.trade_id for t in result.trades] == list(range(2990, 3000))
    assert not result.complete


def test_bad_rows_are_reported(rest: str) -> None:
    FakeBinanceRest.bad_ids = {1002}
    result = BinanceBackfiller(rest, sleep=lambda _s: None).fetch("BTCUSDT", 1000, 1003)
    assert [t.trade_id for t in result.trades] == [1000, 1001, 1003]
    (bad,) = result.bad
    assert "price must be positive" in bad.reason
    assert orjson.loads(bad.raw)["id"] == 1002


def test_weight_limit_pauses_until_the_next_minute(rest: str) -> None:
    waits: list[float] = []
    backfiller = BinanceBackfiller(rest, sleep=waits.append)
    backfiller.used_weight = 5990
    backfiller.fetch("BTCUSDT", 1000, 1000)
    assert len(waits) == 1
    assert 0 < waits[0] <= 61


def test_retry_after_parsing() -> None:
    assert _retry_after("2.5", 1.0) == 2.5
    assert _retry_after(None, 1.0) == 1.0
    assert _retry_after("soon", 1.0) == 1.0


def test_an_answer_that_is_not_a_list_fails_the_backfill(rest: str) -> None:
    FakeBinanceRest.body = b'{"code":-1121,"msg":"Invalid symbol."}'
    result = BinanceBackfiller(rest, attempts=2, sleep=lambda _s: None).fetch("NOPE", 1, 5)
    assert not result.complete
    assert result.trades == []


def test_rows_outside_the_range_are_ignored(rest: str) -> None:
    # the endpoint returns ids from fromId on; ask for less than a page ends exactly at ``last``
    FakeBinanceRest.body = orjson.dumps(
        [
            {"id": i, "price": "1.5", "qty": "2", "time": BASE_TIME, "isBuyerMaker": False, "isBestMatch": True}
            for i in (998, 1000, 1001, 1002, 1005)
        ]
    )
    result = BinanceBackfiller(rest, sleep=lambda _s: None).fetch("BTCUSDT", 1000, 1002)
    assert [t.trade_id for t in result.trades] == [1000, 1001, 1002]
    assert result.complete


class Published:
    """The publish side of a :class:`BackfillWorker`: records each page; can hold the worker inside a page."""

    def __init__(self) -> None:
        self.pages: list[list[int]] = []
        self.letters: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def publish(self, trades: list[Any]) -> int:
        self.entered.set()
        self.gate.wait(30)
        self.pages.append([t.trade_id for t in trades])
        return len(trades)

    def dead_letter(self, reason: str, raw: str, received_at: int) -> None:
        self.letters.append(reason)


def worker(rest: str, published: Published, metrics: IngestMetrics, **options: Any) -> BackfillWorker:
    config: dict[str, Any] = {"max_trades": 100_000, "queue_size": 10, **options}
    return BackfillWorker(
        BinanceBackfiller(rest, attempts=2, sleep=lambda _s: None),
        published.publish,
        published.dead_letter,
        metrics,
        "binance",
        **config,
    )


def test_the_worker_publishes_a_gap_page_by_page(rest: str) -> None:
    FakeBinanceRest.bad_ids = {1500}
    published, metrics = Published(), IngestMetrics("binance")
    backfill = worker(rest, published, metrics)
    assert backfill.submit(Gap("BTCUSDT", 1005, 2994))
    assert backfill.wait_idle(30)
    # One page in memory at a time: each REST answer is published before the next request.
    assert [len(page) for page in published.pages] == [999, 990]
    assert [i for page in published.pages for i in page] == [i for i in range(1005, 2995) if i != 1500]
    (letter,) = published.letters
    assert letter.startswith("backfill: price must be positive")
    assert (metrics.backfill_pages, metrics.backfilled, metrics.backfill_abandoned) == (2, 1989, 0)
    backfill.stop()


def test_a_gap_over_the_cap_is_abandoned_loudly_without_a_request(rest: str, caplog: pytest.LogCaptureFixture) -> None:
    published, metrics = Published(), IngestMetrics("binance")
    backfill = worker(rest, published, metrics, max_trades=500)
    with caplog.at_level("ERROR", logger="ingest.backfill"):
        assert not backfill.submit(Gap("BTCUSDT", 1000, 1500))
    assert FakeBinanceRest.requests == []
    assert (metrics.backfill_abandoned, metrics.backfill_abandoned_trades) == (1, 501)
    (record,) = [r for r in caplog.records if r.message == "gap not backfilled"]
    assert (record.first, record.last, record.missing) == (1000, 1500, 501)  # type: ignore[attr-defined]
    assert "INGEST_BACKFILL_MAX_TRADES=500" in record.reason  # type: ignore[attr-defined]


def test_a_full_queue_and_a_stop_abandon_gaps_and_count_them(rest: str) -> None:
    published, metrics = Published(), IngestMetrics("binance")
    published.gate.clear()  # the worker will wait inside its first page
    backfill = worker(rest, published, metrics, queue_size=1)
    assert backfill.submit(Gap("BTCUSDT", 1000, 1009))
    assert published.entered.wait(30)
    assert backfill.submit(Gap("BTCUSDT", 1100, 1109))  # queued
    assert not backfill.submit(Gap("BTCUSDT", 1200, 1209))  # the queue is full: abandoned
    assert (metrics.backfill_abandoned, metrics.backfill_abandoned_trades) == (1, 10)
    published.gate.set()
    assert backfill.wait_idle(30)
    assert published.pages == [list(range(1000, 1010)), list(range(1100, 1110))]
    published.gate.clear()
    published.entered.clear()
    assert backfill.submit(Gap("BTCUSDT", 1300, 1309))
    assert published.entered.wait(30)
    assert backfill.submit(Gap("BTCUSDT", 1400, 1409))
    stopper = threading.Thread(target=backfill.stop, kwargs={"timeout": 30})
    stopper.start()
    published.gate.set()
    stopper.join(30)
    assert (metrics.backfill_abandoned, metrics.backfill_abandoned_trades) == (2, 20)  # the queued one
    assert not backfill.submit(Gap("BTCUSDT", 1500, 1509))  # stopped: abandoned at once
    assert metrics.backfill_abandoned == 3


def test_a_rest_failure_abandons_the_rest_of_the_gap(rest: str) -> None:
    FakeBinanceRest.script = [(500, {})] * 2
    published, metrics = Published(), IngestMetrics("binance")
    backfill = worker(rest, published, metrics)
    assert backfill.submit(Gap("BTCUSDT", 1000, 1099))
    assert backfill.wait_idle(30)
    assert published.pages == []
    assert (metrics.backfill_abandoned, metrics.backfill_abandoned_trades) == (1, 100)
    backfill.stop()
