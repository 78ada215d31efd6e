"""The simulator's pure parts: symbols, looping, the REST store, faults, synthetic trades, encoders, config."""

from __future__ import annotations

import asyncio
import itertools
import logging
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from ingest.exchanges import UnknownExchangeError, names
from ingest.records import TradeRecord, make_trade
from simulator.base import rfc3339, text_frames
from simulator.binance import encode_trade as binance_trade
from simulator.binance import historical_trade, stream_symbol
from simulator.coinbase import encode_trade as coinbase_trade
from simulator.config import ConfigError, SimulatorConfig
from simulator.faults import MALFORMED_KINDS, Faults, FrameFields, corrupt
from simulator.feed import (
    Feed,
    Subscriber,
    TradeStore,
    exchange_symbol,
    for_exchange,
    looped,
    replay_source,
    split_symbol,
)
from simulator.kraken import encode_trade as kraken_trade
from simulator.kraken import json_number
from simulator.replay import read_trades
from simulator.server import protocol_class
from simulator.synthetic import synthetic_trades, tick_decimals
from tests.conftest import DATA

pytestmark = pytest.mark.unit

TRX_CSV = DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv"
BTC_0808 = DATA / "binance-spot-ws" / "btcusdt_20240808.gz"
BTC_0809 = DATA / "binance-spot-ws" / "btcusdt_20240809.gz"


def trade(trade_id: int = 1, symbol: str = "BTCUSDT", t: int = 1_723_161_255_342, **kw: object) -> TradeRecord:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": symbol,
        "trade_id": trade_id,
        "price": "61837.63000000",
        "quantity": "0.02000000",
        "is_buyer_maker": True,
        "trade_time": t,
        "event_time": t + 1,
        "received_at": t + 2,
    }
    fields.update(kw)
    return TradeRecord(**fields)  # type: ignore[arg-type]


def test_symbols_in_each_exchange_spelling() -> None:
    assert split_symbol("btcusdt") == ("BTC", "USDT")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD")
    assert split_symbol("BTC-USD") == ("BTC", "USD")
    assert split_symbol("ETH/EUR") == ("ETH", "EUR")
    assert split_symbol("XYZ") == ("XYZ", "")
    assert exchange_symbol("coinbase", "BTCUSDT") == "BTC-USDT"
    assert exchange_symbol("kraken", "BTCUSDT") == "BTC/USDT"
    assert exchange_symbol("binance", "BTC-USD") == "BTCUSD"
    assert exchange_symbol("kraken", "XYZ") == "XYZ"
    relabelled = list(for_exchange([trade(1), trade(2), trade(3, exchange="kraken", symbol="ETH/USD")], "kraken"))
    assert [(r.exchange, r.symbol, r.trade_id) for r in relabelled] == [
        ("kraken", "BTC/USDT", 1),
        ("kraken", "BTC/USDT", 2),
        ("kraken", "ETH/USD", 3),
    ]
    assert relabelled[0].price == "61837.63000000"


@pytest.mark.parametrize("cache_limit", [250_000, 5])
def test_looped_shifts_ids_past_the_last_and_times_by_the_span(cache_limit: int) -> None:
    records = [trade(10, t=1000_000_000_000), trade(11, t=1000_000_000_500), trade(5, "ETHUSDT", t=1000_000_000_700)]
    out = list(itertools.islice(looped(lambda: iter(records), cache_limit=cache_limit), 9))
    assert [(r.symbol, r.trade_id) for r in out] == [
        ("BTCUSDT", 10),
        ("BTCUSDT", 11),
        ("ETHUSDT", 5),
        ("BTCUSDT", 12),
        ("BTCUSDT", 13),
        ("ETHUSDT", 6),
        ("BTCUSDT", 14),
        ("BTCUSDT", 15),
        ("ETHUSDT", 7),
    ]
    span = 701
    assert [r.trade_time - 1000_000_000_000 for r in out[:6]] == [0, 500, 700, span, span + 500, span + 700]
    assert out[3].event_time - out[0].event_time == span
    assert list(looped(lambda: iter([]))) == []


def test_looped_real_file_keeps_ids_consecutive() -> None:
    out = list(itertools.islice(looped(lambda: read_trades(TRX_CSV)), 25_000))
    assert [r.trade_id for r in out] == list(range(348656870, 348656870 + 25_000))
    assert out[10_000].price == out[0].price
    assert out[10_000].trade_time > out[9_999].trade_time


def test_replay_source_plays_each_symbol_as_its_own_stream(tmp_path: Path) -> None:
    empty = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    empty.write_text("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n")
    records, pace, names = replay_source([BTC_0809, TRX_CSV, empty, BTC_0808], exchange="kraken")
    assert names == ["BTC/USDT", "TRX/USDT"]
    out = list(records)
    assert len(out) == 9757 + 10147 + 10000
    btc = [r for r in out if r.symbol == "BTC/USDT"]
    assert [r.trade_id for r in btc] == list(range(3735683259, 3735703163))  # 0808 then 0809: one stream
    offsets = [pace(r) for r in out]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert {r.symbol for r in out[:100]} == {"BTC/USDT", "TRX/USDT"}  # both streams start together
    assert all(r.exchange == "kraken" for r in out)

    looping, pace, names = replay_source([TRX_CSV, BTC_0808], loop=True)
    assert names == ["TRXUSDT", "BTCUSDT"]
    sample = list(itertools.islice(looping, 45_000))
    trx = [r.trade_id for r in sample if r.symbol == "TRXUSDT"]
    assert trx == list(range(348656870, 348656870 + len(trx)))
    assert len([r for r in sample if r.symbol == "BTCUSDT"]) > 9757  # BTCUSDT loops on its own

    single, pace, names = replay_source([TRX_CSV])
    assert names == ["TRXUSDT"]
    first = next(single)
    assert pace(first) == first.trade_time
    nothing, _, names = replay_source([empty])
    assert (list(nothing), names) == ([], [])


def test_trade_store_ranges_and_bounds() -> None:
    store = TradeStore(capacity=100)
    for trade_id in range(1, 301):
        store.add(trade(trade_id))
    store.add(trade(50))  # an older id (overlapping files) is not stored twice
    assert len(store) <= 125
    assert store.symbols() == {"BTCUSDT"}
    assert [r.trade_id for r in store.since("BTCUSDT", 290, 5)] == [290, 291, 292, 293, 294]
    assert [r.trade_id for r in store.since("BTCUSDT", 298, 500)] == [298, 299, 300]
    assert store.since("BTCUSDT", 301, 10) == []
    assert store.since("BTCUSDT", 1, 3)[0].trade_id == 300 - len(store) + 1  # oldest kept
    assert [r.trade_id for r in store.latest("BTCUSDT", 2)] == [299, 300]
    assert store.latest("BTCUSDT", 0) == []
    assert store.since("ETHUSDT", 1, 10) == []


BINANCE_FRAME = binance_trade(trade(5))
KRAKEN_FRAME = b'{"channel":"trade","type":"update","data":[' + kraken_trade(trade(5, symbol="BTC/USD")) + b"]}"
COINBASE_FRAME = b'{"channel":"market_trades","events":[{"trades":[' + coinbase_trade(trade(5)) + b"]}]}"


@pytest.mark.parametrize(
    ("frame", "fields"),
    [
        (BINANCE_FRAME, FrameFields("p", "q")),
        (COINBASE_FRAME, FrameFields("price", "size")),
        (KRAKEN_FRAME, FrameFields("price", "qty", quoted=False)),
    ],
)
def test_corrupt_frames_are_malformed_in_the_four_ways(frame: bytes, fields: FrameFields) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(corrupt(frame, "bad-json", fields))
    missing = orjson.loads(corrupt(frame, "missing-field", fields))
    negative = orjson.loads(corrupt(frame, "negative-price", fields))
    non_numeric = orjson.loads(corrupt(frame, "non-numeric-qty", fields))

    def item(data: dict) -> dict:
        if "data" in data:
            return data["data"][0]
        if "events" in data:
            return data["events"][0]["trades"][0]
        return data

    assert fields.price not in item(missing)
    assert Decimal(str(item(negative)[fields.price])) < 0
    assert item(non_numeric)[fields.quantity] == "n/a"
    assert item(orjson.loads(frame))[fields.quantity] != "n/a"
    with pytest.raises(ValueError, match="unknown malformed kind"):
        corrupt(frame, "gremlins", fields)


def test_fault_plan_drops_after_every_n_frames_and_adds_malformed_ones() -> None:
    fields = FrameFields("p", "q")
    frames = [binance_trade(trade(i)) for i in range(10)]
    plan = Faults(fields, drop_every=4)
    assert plan.active
    assert plan.apply(frames[:3]) == (frames[:3], False)
    assert plan.apply(frames[3:]) == (frames[3:4], True)  # the 4th frame, then drop
    assert plan.apply(frames[:6]) == (frames[:4], True)
    assert not Faults(fields).active
    assert Faults(fields).apply(frames) == (frames, False)

    plan = Faults(fields, malformed_rate=0.3, seed=7, connection=1)
    sent, _ = plan.apply(frames * 20)
    assert [f for f in sent if f in frames] == frames * 20  # every real frame still goes out, in order
    assert len(sent) - 200 == plan.malformed > 20
    again, _ = Faults(fields, malformed_rate=0.3, seed=7, connection=1).apply(frames * 20)
    assert again == sent  # deterministic for a seed and connection
    other, _ = Faults(fields, malformed_rate=0.3, seed=8, connection=1).apply(frames * 20)
    assert other != sent
    kinds = set()
    for frame in sent:
        if frame in frames:
            continue
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            kinds.add("bad-json")
            continue
        if "p" not in data:
            kinds.add("missing-field")
        elif data["p"].startswith("-"):
            kinds.add("negative-price")
        elif data["q"] == "n/a":
            kinds.add("non-numeric-qty")
    assert kinds == set(MALFORMED_KINDS)


def test_synthetic_trades_are_valid_deterministic_and_have_whales() -> None:
    def generate() -> list[TradeRecord]:
        source = synthetic_trades(["btcusdt", "ETHUSDT", "TRXUSDT"], 1000, seed=3, start_ms=1_700_000_000_000)
        return list(itertools.islice(source, 20_000))

    first, again = generate(), generate()
    assert first == again
    for symbol in ("BTCUSDT", "ETHUSDT", "TRXUSDT"):
        ids = [r.trade_id for r in first if r.symbol == symbol]
        assert ids == list(range(1_000_000, 1_000_000 + len(ids)))
        assert len(ids) > 5000
    assert first[1000].trade_time == 1_700_000_001_000  # 1000 trades/s
    for record in first[:2000]:
        rebuilt = make_trade(
            exchange=record.exchange,
            symbol=record.symbol,
            trade_id=record.trade_id,
            price=record.price,
            quantity=record.quantity,
            is_buyer_maker=record.is_buyer_maker,
            trade_time=record.trade_time,
            event_time=record.event_time,
            received_at=record.received_at,
        )
        assert rebuilt == record
        assert len(record.price.split(".")[1]) == 8
    whales = sum(r.notional() >= 100_000 for r in first)
    assert 0.0005 * len(first) <= whales <= 0.01 * len(first)
    assert {r.is_buyer_maker for r in first} == {True, False}
    btc = [Decimal(r.price) for r in first if r.symbol == "BTCUSDT"]
    assert min(btc) > 40_000
    assert max(btc) < 90_000
    assert [tick_decimals(price) for price in (60000, 150, 2, 0.2)] == [2, 3, 4, 6]
    with pytest.raises(ValueError, match="rate"):
        next(synthetic_trades(["BTCUSDT"], 0))
    with pytest.raises(ValueError, match="symbol"):
        next(synthetic_trades([], 10))


def test_encoders_match_the_exchange_formats() -> None:
    record = trade(3735683259)
    assert orjson.loads(binance_trade(record)) == {
        "e": "trade",
        "E": 1_723_161_255_343,
        "s": "BTCUSDT",
        "t": 3735683259,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1_723_161_255_342,
        "m": True,
        "M": True,
    }
    assert orjson.loads(binance_trade(record, 1000))["T"] == 1_723_161_255_342_000
    assert historical_trade(record) == {
        "id": 3735683259,
        "price": "61837.63000000",
        "qty": "0.02000000",
        "quoteQty": "1236.75260000",
        "time": 1_723_161_255_342,
        "isBuyerMaker": True,
        "isBestMatch": True,
    }
    assert stream_symbol("btcusdt@trade") == "BTCUSDT"
    assert stream_symbol("btcusdt@aggTrade") == "BTCUSDT"
    assert stream_symbol("btcusdt@depth") is None
    assert orjson.loads(coinbase_trade(trade(7, "BTC-USD", is_buyer_maker=False))) == {
        "product_id": "BTC-USD",
        "trade_id": "7",
        "price": "61837.63000000",
        "size": "0.02000000",
        "time": "2024-08-08T23:54:15.342000Z",
        "side": "BUY",
    }
    kraken = kraken_trade(trade(10, "BTC/USD", price="0.10", quantity="1E+2"))
    assert b'"price":0.10,' in kraken
    assert b'"qty":1E+2,' in kraken  # already a valid JSON number: kept as written
    parsed = orjson.loads(kraken)
    assert (parsed["side"], parsed["ord_type"], parsed["trade_id"]) == ("sell", "limit", 10)
    assert json_number("61837.63000000") == "61837.63000000"
    assert json_number(".5") == "0.5"
    with pytest.raises(ValueError, match="not a decimal"):
        json_number("abc")
    with pytest.raises(ValueError, match="finite"):
        json_number("NaN")
    assert rfc3339(1_723_161_255_342) == "2024-08-08T23:54:15.342000Z"
    assert rfc3339(1_723_161_255_342, nanos=True) == "2024-08-08T23:54:15.342000000Z"


def test_text_frames_headers() -> None:
    for size, header in ((5, b"\x81\x05"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (70000, b"\x81\x7f")):
        payload = b"x" * size
        data = text_frames([payload, b"ab"])
        assert data.startswith(header)
        assert data.endswith(payload + b"\x81\x02ab")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exchange": "ftx"}, "--exchange"),
        ({"port": 70000}, "--port"),
        ({"speed": -1}, "--speed"),
        ({"max_rate": -5}, "--max-rate"),
        ({"drop_every": -1}, "--drop-every"),
        ({"malformed_rate": 2}, "--malformed-rate"),
        ({"start_delay": -1}, "--start-delay"),
        ({"gap_every": 1}, "--gap-every"),
    ],
)
def test_config_refuses_bad_settings(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimulatorConfig(**changes)


def test_an_unknown_exchange_is_an_error_naming_the_known_ones_not_binance() -> None:
    # protocol_class used to serve Binance's protocol for any name it did not know, and exchange_symbol to spell
    # it as Binance does.
    known = f"choose one of {', '.join(names())}"
    with pytest.raises(UnknownExchangeError, match=f"^unknown exchange 'bitmex': {known}$"):
        protocol_class("bitmex")
    with pytest.raises(UnknownExchangeError, match=known):
        exchange_symbol("bitmex", "BTCUSDT")
    with pytest.raises(ConfigError, match=f"--exchange must be one of {', '.join(names())}, got 'bitmex'"):
        SimulatorConfig(exchange="bitmex")
    assert protocol_class("kraken").__name__ == "KrakenProtocol"


@pytest.mark.parametrize(("max_rate", "paced"), [(0.0, False), (4000.0, True)])
def test_max_rate_spreads_the_feed_over_time(max_rate: float, paced: bool) -> None:
    # 200 trades at speed 0 fit one chunk; capped at 4,000/s, trade n goes out no earlier than n / 4,000 s after
    # the first (within the 1 ms the feed does not sleep for), so the feed lasts at least 199 / 4,000 s. That lower
    # bound holds however loaded the machine is; how many chunks the paced trades form does not (a stalled event
    # loop finds several trades due at once), so only the unpaced count is asserted.
    async def run() -> tuple[list[int], float]:
        feed = Feed((trade(i) for i in range(1, 201)), lambda r: r.trade_id, speed=0, max_rate=max_rate)
        subscriber = Subscriber(feed, max_chunks=1000)
        subscriber.subscribe(["BTCUSDT"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        await feed.run()
        elapsed = loop.time() - started
        sizes = []
        while not subscriber.queue.empty():
            sizes.append(len(subscriber.queue.get_nowait()))
        return sizes, elapsed

    sizes, elapsed = asyncio.run(run())
    assert sum(sizes) == 200
    if paced:
        assert elapsed >= 199 / max_rate - 0.001
    else:
        assert sizes == [200]


def test_feed_says_when_it_starts_and_finishes(caplog: pytest.LogCaptureFixture) -> None:
    # make bench-peer opens its measurement window on the "feed started" line: it must come once the first
    # client has subscribed, before the first trade goes out.
    async def run() -> None:
        feed = Feed((trade(i) for i in range(1, 11)), lambda r: r.trade_id, speed=0)
        subscriber = Subscriber(feed, max_chunks=1000)
        task = asyncio.create_task(feed.run())
        await asyncio.sleep(0.05)
        assert "simulator: feed started" not in caplog.text  # nobody subscribed: the market has not opened
        subscriber.subscribe(["BTCUSDT"])
        await task

    with caplog.at_level(logging.INFO, logger="simulator.feed"):
        asyncio.run(run())
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index("simulator: feed started") < messages.index("simulator: feed finished")
