"""Coinbase and Kraken REST backfill (and the history every backfill can no longer reach), against the project's
own simulator serving the exchanges' REST layouts from a filled trade store (real HTTP, no mocks)."""

from __future__ import annotations

import itertools
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from ingest.backfill import BackfillError, BackfillResult, BackfillWorker, RestClient, collect
from ingest.exchanges.binance.backfill import BinanceBackfiller
from ingest.exchanges.coinbase import adapter as coinbase
from ingest.exchanges.coinbase.backfill import CoinbaseBackfiller
from ingest.exchanges.kraken import adapter as kraken
from ingest.exchanges.kraken.backfill import KrakenBackfiller
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
from ingest.records import InvalidRecordError, TradeRecord
from simulator.base import TokenBucket
from simulator.config import SimulatorConfig
from simulator.kraken import rest_key
from simulator.server import BackgroundSimulator
from simulator.synthetic import synthetic_trades

pytestmark = pytest.mark.unit

START = 1_700_000_000_000
LATER = 1_800_000_000_000  # a receive time after every trade time used here
FIRST_ID = 1_000_000
SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "BTC/USD"}
CLIENTS: dict[str, type[RestClient]] = {
    "binance": BinanceBackfiller,
    "coinbase": CoinbaseBackfiller,
    "kraken": KrakenBackfiller,
}


def trades(exchange: str, count: int, rate: float = 1000.0) -> list[TradeRecord]:
    """``count`` trades of one symbol, ids from ``FIRST_ID`` (at 5,000/s several share a millisecond)."""
    source = synthetic_trades([SYMBOLS[exchange]], rate, exchange=exchange, start_ms=START, seed=3)
    return list(itertools.islice(source, count))


@contextmanager
def rest(exchange: str, records: list[TradeRecord], **config: Any) -> Iterator[BackgroundSimulator]:
    """A simulator of ``exchange`` whose REST already holds ``records`` (no feed needed: nobody subscribes)."""
    sim = BackgroundSimulator(SimulatorConfig(exchange=exchange, speed=0, **config), iter(()))
    for record in records:
        sim.simulator.store.add(record)
    with sim:
        yield sim


def client(exchange: str, sim: BackgroundSimulator, sleep: Callable[[float], None] = lambda _s: None) -> Any:
    return CLIENTS[exchange](sim.http_url, min_interval=0, sleep=sleep, attempts=3)


def get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


# --------------------------------------------------------------------------------------------- Coinbase
def test_coinbase_walks_back_by_trade_id_and_yields_in_id_order() -> None:
    records = trades("coinbase", 2500)
    by_id = {r.trade_id: r for r in records}
    with rest("coinbase", records, rest_rate=0) as sim:
        backfiller = client("coinbase", sim)
        pages = list(backfiller.pages("btc-usd", FIRST_ID + 100, FIRST_ID + 2300))
    # after=last+1, then two CB-AFTER cursors: the third page reaches below ``first``.
    assert backfiller.requests == 3
    assert [len(page.trades) for page, _next in pages] == [1000, 1000, 201]
    assert [next_id for _page, next_id in pages] == [FIRST_ID + 1100, FIRST_ID + 2100, FIRST_ID + 2301]
    assert pages[-1][0].complete
    got = [t for page, _next in pages for t in page.trades]
    assert [t.trade_id for t in got] == list(range(FIRST_ID + 100, FIRST_ID + 2301))
    for trade in got:
        recorded = by_id[trade.trade_id]
        assert (trade.symbol, trade.price, trade.quantity, trade.trade_time) == (
            "BTC-USD",
            recorded.price,
            recorded.quantity,
            recorded.trade_time,
        )
        assert trade.is_buyer_maker is recorded.is_buyer_maker  # REST's maker side, stored as the feed's meaning


def test_coinbase_rest_rows_carry_the_makers_side() -> None:
    row = {"time": "2024-08-08T23:54:15.342000Z", "trade_id": 7, "price": "60000.01", "size": "0.5", "side": "buy"}
    record = coinbase.trade_from_rest("BTC-USD", row, LATER)
    assert (record.trade_id, record.trade_time, record.is_buyer_maker) == (7, 1_723_161_255_342, True)
    assert coinbase.trade_from_rest("BTC-USD", {**row, "side": "sell"}, LATER).is_buyer_maker is False
    for bad, reason in (
        ({**row, "side": "BUY"}, "side must be buy or sell"),
        ({**row, "time": "yesterday"}, "RFC 3339"),
        ({k: v for k, v in row.items() if k != "size"}, "missing field 'size'"),
        ([1, 2], "not a JSON object"),
    ):
        with pytest.raises(InvalidRecordError, match=reason):
            coinbase.trade_from_rest("BTC-USD", bad, LATER)


def test_coinbase_429_is_waited_out() -> None:
    with rest("coinbase", trades("coinbase", 1500), rest_rate=0.001) as sim:
        bucket = sim.simulator.protocol.rest_bucket
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            sim.call(lambda: setattr(bucket, "tokens", 1.0))  # the limit's window has passed

        backfiller = client("coinbase", sim, sleep)
        result = backfiller.fetch("BTC-USD", FIRST_ID, FIRST_ID + 1200)  # two requests; one token at a time
        refused = sim.call(lambda: bucket.refused)
    assert result.complete
    assert [t.trade_id for t in result.trades] == list(range(FIRST_ID, FIRST_ID + 1201))
    assert (refused, backfiller.rate_limited, waits) == (1, 1, [0.5])


def test_coinbase_rest_answers_like_the_exchange() -> None:
    with rest("coinbase", trades("coinbase", 50), rest_rate=0.001) as sim:
        base = f"{sim.http_url}/products/BTC-USD/trades"
        status, headers, rows = get(f"{base}?limit=3&after={FIRST_ID + 10}")
        assert status == 200
        assert [r["trade_id"] for r in rows] == [FIRST_ID + 9, FIRST_ID + 8, FIRST_ID + 7]  # newest first
        assert set(rows[0]) == {"time", "trade_id", "price", "size", "side"}
        assert (headers["CB-BEFORE"], headers["CB-AFTER"]) == (str(FIRST_ID + 9), str(FIRST_ID + 7))
        assert get(f"{base}?limit=2")[0] == 429
        sim.call(lambda: setattr(sim.simulator.protocol.rest_bucket, "rate", 0))
        assert get(f"{base}?limit=2")[2][0]["trade_id"] == FIRST_ID + 49  # the latest
        assert [r["trade_id"] for r in get(f"{base}?limit=2&before={FIRST_ID + 10}")[2]] == [
            FIRST_ID + 12,
            FIRST_ID + 11,
        ]
        assert get(f"{base}?limit=0")[0] == 400
        assert get(f"{base}?after=x")[0] == 400
        assert get(f"{sim.http_url}/products/DOGE-USD/trades")[:3:2] == (404, {"message": "NotFound"})
        assert get(f"{sim.http_url}/products")[0] == 404


def test_coinbase_errors_end_the_walk() -> None:
    with rest("coinbase", trades("coinbase", 10), rest_rate=0) as sim:
        backfiller = client("coinbase", sim)
        with pytest.raises(BackfillError, match="HTTP 404"):
            list(backfiller.pages("ETH-USD", 1, 5))
        assert list(backfiller.pages("BTC-USD", 9, 5)) == []  # an empty range asks nothing
        assert backfiller.requests == 1


# --------------------------------------------------------------------------------------------- Kraken
def test_kraken_pages_by_time_from_the_trade_before_the_gap() -> None:
    records = trades("kraken", 2600, rate=5000.0)  # five trades a millisecond: page ends cut through them
    by_id = {r.trade_id: r for r in records}
    first, last = FIRST_ID + 300, FIRST_ID + 2500
    with rest("kraken", records, rest_rate=0) as sim:
        backfiller = client("kraken", sim)
        result = backfiller.fetch("BTC/USD", first, last, by_id[first - 1].trade_time)
    assert result.complete
    assert (result.unrecoverable, result.bad) == ([], [])
    assert [t.trade_id for t in result.trades] == list(range(first, last + 1))
    assert backfiller.requests == 3
    for trade in result.trades:
        recorded = by_id[trade.trade_id]
        assert (trade.symbol, trade.price, trade.quantity, trade.trade_time, trade.is_buyer_maker) == (
            "BTC/USD",
            recorded.price,  # REST sends decimal strings: kept verbatim
            recorded.quantity,
            recorded.trade_time,
            recorded.is_buyer_maker,
        )


def test_kraken_rate_limit_errors_are_backed_off() -> None:
    records = trades("kraken", 1500)
    with rest("kraken", records, rest_rate=0.001) as sim:
        bucket = sim.simulator.protocol.rest_bucket
        sim.call(lambda: setattr(bucket, "tokens", 1.0))
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            sim.call(lambda: setattr(bucket, "tokens", 1.0))

        backfiller = client("kraken", sim, sleep)
        result = backfiller.fetch("BTC/USD", FIRST_ID + 10, FIRST_ID + 1400, records[9].trade_time)
    assert result.complete
    assert len(result.trades) == 1391
    assert (backfiller.rate_limited, waits) == (1, [0.5])


def test_kraken_without_the_time_before_the_gap_abandons_it(caplog: pytest.LogCaptureFixture) -> None:
    with rest("kraken", trades("kraken", 10), rest_rate=0) as sim:
        metrics = IngestMetrics("kraken")
        worker = BackfillWorker(client("kraken", sim), len, lambda *_a: None, metrics, "kraken", 1000, 10)
        with caplog.at_level("ERROR", logger="ingest.backfill"):
            assert worker.fill(Gap("BTC/USD", FIRST_ID + 2, FIRST_ID + 4)) == 0
    assert (metrics.backfill_abandoned, metrics.backfill_abandoned_trades) == (1, 3)
    (record,) = [r for r in caplog.records if r.message == "gap not backfilled"]
    assert "time of BTC/USD trade 1000001 is unknown" in record.reason  # type: ignore[attr-defined]


def test_kraken_errors_that_are_not_rate_limits_fail_at_once() -> None:
    with rest("kraken", trades("kraken", 10), rest_rate=0) as sim:
        backfiller = client("kraken", sim)
        with pytest.raises(BackfillError, match="EQuery:Unknown asset pair"):
            list(backfiller.pages("ETH/USD", 1, 5, START))
        assert backfiller.requests == 1


def test_kraken_rest_names_and_rows() -> None:
    assert (kraken.rest_pair("BTC/USD"), rest_key("BTC/USD")) == ("XBTUSD", "XXBTZUSD")
    assert (kraken.rest_pair("BTC/USDT"), rest_key("BTC/USDT")) == ("XBTUSDT", "XBTUSDT")
    assert (rest_key("ETH/USD"), rest_key("ETH/BTC"), rest_key("SOL/USD")) == ("XETHZUSD", "XETHXXBT", "SOLUSD")
    row = kraken.loads('["61842.01000000","0.00100000",1723161255.3429999,"s","m","",42]')
    record = kraken.trade_from_rest("BTC/USD", row, LATER)
    assert (record.price, record.quantity, record.trade_time, record.is_buyer_maker) == (
        "61842.01000000",
        "0.00100000",
        1_723_161_255_342,
        True,
    )
    assert kraken.rest_row_id(row) == 42
    assert kraken.rest_row_id({"id": 42}) is None
    for bad, reason in (
        ([*row[:3], "x", *row[4:]], "side must be b or s"),
        ([*row[:2], "soon", *row[3:]], "time must be a JSON number"),
        (row[:6], "7 items"),
    ):
        with pytest.raises(InvalidRecordError, match=reason):
            kraken.trade_from_rest("BTC/USD", bad, LATER)


def test_kraken_rest_answers_like_the_exchange() -> None:
    records = trades("kraken", 20)
    with rest("kraken", records, rest_rate=0) as sim:
        base = f"{sim.http_url}/0/public/Trades"
        since_ns = records[4].trade_time * 1_000_000
        _status, _headers, body = get(f"{base}?pair=XBTUSD&since={since_ns}&count=3")
        assert body["error"] == []
        assert set(body["result"]) == {"XXBTZUSD", "last"}  # asked as XBTUSD, keyed by Kraken's legacy name
        rows = body["result"]["XXBTZUSD"]
        assert [r[6] for r in rows] == [r.trade_id for r in records if r.trade_time > records[4].trade_time][:3]
        assert body["result"]["last"] == str(records[rows[-1][6] - FIRST_ID].trade_time * 1_000_000)
        seconds = get(f"{base}?pair=BTC/USD&since={records[4].trade_time // 1000}")[2]["result"]["XXBTZUSD"]
        assert records[0].trade_time == START  # on the second exactly: ``since`` is exclusive
        assert seconds[0][6] == FIRST_ID + 1
        assert len(get(f"{base}?pair=XXBTZUSD")[2]["result"]["XXBTZUSD"]) == 20  # the latest
        assert get(f"{base}?pair=XBTUSD&count=0")[2] == {"error": ["EGeneral:Invalid arguments"]}
        assert get(f"{base}?pair=XBTUSD&since=abc")[2] == {"error": ["EGeneral:Invalid arguments"]}
        assert get(f"{sim.http_url}/0/public/Depth")[0] == 404
        sim.call(lambda: setattr(sim.simulator.protocol.rest_bucket, "rate", 0.001))
        sim.call(lambda: setattr(sim.simulator.protocol.rest_bucket, "tokens", 0.0))
        assert get(f"{base}?pair=XBTUSD")[2] == {"error": ["EGeneral:Too many requests"]}


# --------------------------------------------------------------------------------------------- all three
# (that ids older than REST reaches are counted unrecoverable is the conformance suite's, tests/conformance)
def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 3.0, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.allow(), bucket.allow()] == [True, False]
    assert bucket.refused == 2
    assert all(TokenBucket(0.0, 0.0).allow() for _ in range(100))  # rate 0: no limit


# --------------------------------------------------------------------------------------------- odd answers
class Scripted(BaseHTTPRequestHandler):
    """Answers each GET with the next scripted (status, headers, body): what a misbehaving exchange might send."""

    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        status, headers, body = self.script.pop(0) if self.script else (200, {}, b"[]")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    Scripted.script, Scripted.paths = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def kraken_body(rows: list[Any], last: str = "1", key: str = "XXBTZUSD") -> tuple[int, dict[str, str], bytes]:
    return 200, {}, json.dumps({"error": [], "result": {key: rows, "last": last}}).encode()


def test_kraken_answers_without_one_pairs_trades_fail_the_page(scripted: str) -> None:
    backfiller = KrakenBackfiller(scripted, min_interval=0, sleep=lambda _s: None)
    for body in (b"[1]", b'{"error":[],"result":[]}', b'{"error":[],"result":{"A":[],"B":[],"last":"1"}}'):
        Scripted.script = [(200, {}, body)]
        with pytest.raises(BackfillError, match="answered"):
            list(backfiller.pages("BTC/USD", 5, 9, START))
    assert list(backfiller.pages("BTC/USD", 9, 5, START)) == []  # an empty range asks nothing
    assert "pair=XBTUSD" in Scripted.paths[0]


def test_kraken_stops_when_nothing_comes_or_nothing_moves(scripted: str) -> None:
    backfiller = KrakenBackfiller(scripted, min_interval=0, sleep=lambda _s: None)
    row = ["1.5", "2", 1_700_000_000.5, "b", "m", "", 5]
    Scripted.script = [kraken_body([])]
    assert list(backfiller.pages("BTC/USD", 5, 9, START)) == []
    # One trade, then the same one again with a cursor that does not move: no third request.
    Scripted.script = [kraken_body([row], last="0"), kraken_body([["x", "2", "late", "b", "m", "", 6]], last="0")]
    pages = list(backfiller.pages("BTC/USD", 5, 9, 1_700_000_000_000))
    assert [[t.trade_id for t in page.trades] for page, _next in pages] == [[5], []]
    assert [bad.reason for bad in pages[1][0].bad] == ["time must be a JSON number, got str"]
    assert [next_id for _page, next_id in pages] == [6, 7]  # a refused row's id counts as received
    assert len(Scripted.paths) == 3


def test_coinbase_oddities(scripted: str) -> None:
    backfiller = CoinbaseBackfiller(scripted, min_interval=0, sleep=lambda _s: None)
    Scripted.script = [(200, {}, b'{"message":"oops"}')]
    with pytest.raises(BackfillError, match="answered"):
        list(backfiller.pages("BTC-USD", 5, 9))
    # Rows at or above the cursor (no progress) end the walk: the ids below them are beyond reach.
    row = {"time": "2024-08-08T23:54:15.342Z", "trade_id": 20, "price": "1", "size": "1", "side": "buy"}
    Scripted.script = [(200, {"CB-AFTER": "30"}, json.dumps([row]).encode())]
    pages = list(backfiller.pages("BTC-USD", 5, 9))
    assert len(Scripted.paths) == 2
    assert [page.trades for page, _next in pages] == [[]]
    assert [page.unrecoverable for page, _next in pages] == [[(5, 9)]]


def test_collect_keeps_what_it_can_and_names_what_it_cannot() -> None:
    page = BackfillResult()
    rows = [{"id": 3}, {"id": None, "bad": True}, {"id": 6}, {"id": 7, "bad": True}, {"id": 8}, {"id": 99}]

    def convert(symbol: str, row: Any, _received_at: int) -> TradeRecord:
        if row.get("bad"):
            raise InvalidRecordError("bad row")
        return trades("binance", 1)[0]._replace(trade_id=row["id"])

    def row_id(row: Any) -> int | None:
        return row["id"]

    assert collect(page, rows, "BTCUSDT", convert, row_id, 5, 10) == 11
    assert [t.trade_id for t in page.trades] == [6, 8]
    assert len(page.bad) == 2  # the one without an id (cannot tell it is out of range) and id 7
    assert page.unrecoverable == [(5, 5), (9, 10)]  # skipped by the answer, and past the range's end


def test_requests_are_paced(scripted: str) -> None:
    waits: list[float] = []
    backfiller = CoinbaseBackfiller(scripted, min_interval=30.0, sleep=waits.append)
    Scripted.script = [(200, {}, b"[]"), (200, {}, b"[]")]
    list(backfiller.pages("BTC-USD", 5, 9))
    list(backfiller.pages("BTC-USD", 5, 9))
    assert len(waits) == 1
    assert 0 < waits[0] <= 30.0
    with pytest.raises(NotImplementedError):
        RestClient(scripted).fetch("BTC-USD", 1, 2)
