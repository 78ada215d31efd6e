"""FrameProcessor and IngestRunner with a real producer on per-test Kafka topics; settings validation."""

from __future__ import annotations

import threading

import orjson
import pytest

from ingest.client import WsClient
from ingest.exchanges.base import FrameParser, ParseResult
from ingest.exchanges.binance.adapter import BinanceExchange, parse_frame
from ingest.exchanges.binance.backfill import BinanceBackfiller
from ingest.exchanges.coinbase.adapter import CoinbaseExchange
from ingest.exchanges.kraken.adapter import KrakenExchange
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import decode
from ingest.runner import FrameProcessor, IngestRunner, IngestThreadError, SettingsError, check_url, load_config
from simulator.config import SimulatorConfig
from simulator.server import BackgroundSimulator
from tests.conftest import KafkaTopics, wait_for
from tests.ingest.pipeline import read_topic
from tests.ingest.test_client import records
from tests.ingest.test_gaps_backfill import rest  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
NOW = 1_723_161_300_000


def binance_trade(trade_id: int, price: str = "61837.63000000") -> bytes:
    event = {"e": "trade", "E": NOW, "s": "BTCUSDT", "t": trade_id, "p": price, "q": "0.5", "T": NOW, "m": True}
    return orjson.dumps({"stream": "btcusdt@trade", "data": event})


def test_gaps_are_backfilled_in_order_and_duplicates_dropped(
    kafka_topics: KafkaTopics,
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    adapter = BinanceExchange("ws://unused")
    processor = FrameProcessor(
        adapter, adapter.parser(), producer, metrics, backfiller=BinanceBackfiller(rest, sleep=lambda _s: None)
    )
    for trade_id in (1000, 1001, 1001, 999, 1005, 1006):
        assert processor(binance_trade(trade_id), NOW) is False
    assert processor.wait_backfill(10)
    assert producer.flush(10)
    assert (metrics.gaps, metrics.missing_trades, metrics.backfilled, metrics.duplicates) == (1, 3, 3, 2)
    assert (metrics.backfill_pages, metrics.backfill_abandoned) == (1, 0)
    assert metrics.trades_published == metrics.trades_accepted == 7
    # The backfill runs on its own thread (the stream never waits for REST): the gap may land after 1005.
    records_ = sorted((decode(value) for _key, value in read_topic(kafka_topics.trades, 7)), key=lambda r: r.trade_id)
    assert [r.trade_id for r in records_] == list(range(1000, 1007))
    assert records_[2].price == "60001.01000000"  # from REST (1002 % 7 == 1)
    assert records_[5].price == "61837.63000000"  # from the stream


def test_dead_letters_events_and_the_trade_limit(
    kafka_topics: KafkaTopics, producer: TradeProducer, metrics: IngestMetrics
) -> None:
    adapter = BinanceExchange("ws://unused")
    stopped = threading.Event()
    processor = FrameProcessor(adapter, adapter.parser(), producer, metrics, max_trades=3, on_limit=stopped.set)
    assert processor(b"{broken", NOW) is False
    assert processor(b'{"error":{"code":2,"msg":"Invalid request"},"id":1}', NOW) is False
    assert processor(b'{"e":"serverShutdown","E":1}', NOW) is True
    for trade_id in range(1, 6):
        processor(binance_trade(trade_id), NOW)
    assert stopped.is_set()
    producer.flush(10)
    assert metrics.trades_accepted == 3
    assert len(read_topic(kafka_topics.trades, 3)) == 3
    (letter,) = [orjson.loads(value) for _key, value in read_topic(kafka_topics.dlq, 1)]
    assert letter["raw"] == "{broken"
    assert letter["source"] == "ingest:binance"
    assert letter["reason"].startswith("malformed JSON")
    assert (metrics.malformed, metrics.dlq_published) == (1, 1)


def test_kraken_gaps_are_counted_without_backfill(
    kafka_topics: KafkaTopics, producer: TradeProducer, metrics: IngestMetrics
) -> None:
    adapter = KrakenExchange("ws://unused")
    processor = FrameProcessor(adapter, adapter.parser(), producer, metrics)

    def frame(*ids: int) -> str:
        trades = [
            {
                "symbol": "BTC/USD",
                "side": "buy",
                "price": 1.5,
                "qty": 2,
                "trade_id": i,
                "timestamp": "2024-01-01T00:00:00Z",
            }
            for i in ids
        ]
        return orjson.dumps({"channel": "trade", "type": "update", "data": trades}).decode()

    processor(frame(1, 2), NOW)
    processor(frame(1, 2, 3), NOW)  # the snapshot repeated after a reconnect
    processor(frame(7), NOW)
    producer.flush(10)
    assert (metrics.gaps, metrics.missing_trades, metrics.backfilled, metrics.duplicates) == (1, 3, 0, 2)
    assert sorted(decode(v).trade_id for _k, v in read_topic(kafka_topics.trades, 4)) == [1, 2, 3, 7]


def test_coinbase_sequence_gaps_are_counted(producer: TradeProducer, metrics: IngestMetrics) -> None:
    adapter = CoinbaseExchange("ws://unused")
    processor = FrameProcessor(adapter, adapter.parser(), producer, metrics)
    assert processor.tracker is not None  # Coinbase trade ids are consecutive per product: checked like Binance's
    processor('{"channel":"heartbeats","sequence_num":1,"events":[]}', NOW)
    processor('{"channel":"heartbeats","sequence_num":4,"events":[]}', NOW)
    assert metrics.gaps == 1


def test_runner_runs_connections_until_the_limit(
    kafka_topics: KafkaTopics, producer: TradeProducer, metrics: IngestMetrics
) -> None:
    config = SimulatorConfig(exchange="binance", speed=0, drop_every=700, ping_interval=None)
    with BackgroundSimulator(config, records(3000)) as sim:
        runner = IngestRunner(
            BinanceExchange(sim.url),
            ["btcusdt"],
            producer,
            metrics,
            backfiller=BinanceBackfiller(sim.http_url),
            max_trades=2500,
        )
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        wait_for(lambda: not thread.is_alive(), timeout=60, what="the runner to reach its limit")
    producer.flush(10)
    assert metrics.trades_published == 2500
    assert metrics.reconnects >= 1
    assert metrics.backfilled > 0
    # The backfill runs beside the stream (a gap lands after later trades), so the limit cuts a set of ids,
    # not a prefix: each is a trade of the recording, once.
    ids = [decode(v).trade_id for _k, v in read_topic(kafka_topics.trades, 2500)]
    assert len(ids) == len(set(ids)) == 2500
    assert set(ids) <= {record.trade_id for record in records(3000)}


def test_runner_needs_symbols(producer: TradeProducer, metrics: IngestMetrics) -> None:
    with pytest.raises(SettingsError, match="--symbols"):
        IngestRunner(BinanceExchange("ws://x"), [], producer, metrics)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("wss://stream.binance.com:9443", True),
        ("ws://127.0.0.1:9443", True),
        ("http://127.0.0.1:9443", False),
        ("stream.binance.com", False),
        ("ws://", False),
        ("ws://host:notaport", False),
        ("ws://127.0.0.1:", False),
        ("", False),
    ],
)
def test_check_url(value: str, ok: bool) -> None:
    if ok:
        assert check_url("BINANCE_WS_URL", value, ("ws", "wss")) == value
    else:
        with pytest.raises(SettingsError, match="BINANCE_WS_URL"):
            check_url("BINANCE_WS_URL", value, ("ws", "wss"))


def test_load_config(settings: pytest.FixtureRequest) -> None:
    settings.BINANCE_WS_URL = "ws://127.0.0.1:1"  # type: ignore[attr-defined]
    settings.BINANCE_REST_URL = "http://127.0.0.1:1"  # type: ignore[attr-defined]
    config = load_config("binance")
    assert (config.ws_url, config.rest_url) == ("ws://127.0.0.1:1", "http://127.0.0.1:1")
    settings.KRAKEN_REST_URL = "http://127.0.0.1:2"  # type: ignore[attr-defined]
    assert load_config("kraken").rest_url == "http://127.0.0.1:2"
    settings.BINANCE_REST_URL = "ftp://x"  # type: ignore[attr-defined]
    with pytest.raises(SettingsError, match="BINANCE_REST_URL"):
        load_config("binance")
    settings.COINBASE_REST_URL = "https://"  # type: ignore[attr-defined]
    with pytest.raises(SettingsError, match="COINBASE_REST_URL"):
        load_config("coinbase")
    with pytest.raises(SettingsError, match="unknown exchange"):
        load_config("bitmex")


class ExplodingParser(FrameParser):
    """The Binance parser with a bug: any frame holding ``boom`` raises."""

    def parse(self, raw: str | bytes, received_at: int) -> ParseResult:
        if b"boom" in (raw.encode() if isinstance(raw, str) else raw):
            raise ZeroDivisionError("division by zero in a parser")
        return parse_frame(raw, received_at)


def test_a_parser_exception_costs_one_dead_letter_not_the_thread(
    kafka_topics: KafkaTopics, producer: TradeProducer, metrics: IngestMetrics
) -> None:
    processor = FrameProcessor(BinanceExchange("ws://unused"), ExplodingParser(), producer, metrics)
    assert processor(b'{"boom": true}', NOW) is False
    assert processor(binance_trade(1), NOW) is False  # the next frame goes on as usual
    assert producer.flush(10)
    (letter,) = [orjson.loads(value) for _key, value in read_topic(kafka_topics.dlq, 1)]
    assert letter["reason"] == "parser error: ZeroDivisionError: division by zero in a parser"
    assert letter["raw"] == '{"boom": true}'
    assert (metrics.parser_errors, metrics.malformed, metrics.dlq_published, metrics.trades_published) == (1, 1, 1, 1)


class FailingClient(WsClient):
    """A connection whose loop dies (an injected bug): the runner must fail, not run on without it."""

    connections = 0

    def __init__(self, *_args: object, **_kwargs: object) -> None:  # no connection at all
        pass

    def run(self) -> None:
        raise RuntimeError("injected failure")


class ReturningClient(FailingClient):
    """A connection loop that returns although nobody stopped it."""

    def run(self) -> None:
        return


@pytest.mark.parametrize(
    ("client", "reason"),
    [(FailingClient, "RuntimeError: injected failure"), (ReturningClient, "returned before ingest was stopped")],
)
def test_a_dead_connection_thread_fails_the_runner(
    producer: TradeProducer, metrics: IngestMetrics, client: type[FailingClient], reason: str
) -> None:
    runner = IngestRunner(BinanceExchange("ws://unused"), ["btcusdt"], producer, metrics, client_factory=client)
    with pytest.raises(IngestThreadError, match=reason):
        runner.run()
    assert metrics.thread_failures == 1
    assert runner.stop.is_set()


def test_a_dead_backfill_worker_fails_the_runner(
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    stop = threading.Event()
    runner = IngestRunner(
        BinanceExchange("ws://unused"),
        ["btcusdt"],
        producer,
        metrics,
        backfiller=BinanceBackfiller(rest),
        stop=stop,
        client_factory=ReturningClient,
    )
    backfill = runner.processor.backfill
    assert backfill is not None

    def broken_fill(_gap: object) -> int:
        raise MemoryError("injected")

    backfill.fill = broken_fill  # type: ignore[method-assign,assignment]
    assert backfill.submit(Gap("BTCUSDT", 1000, 1001))
    wait_for(lambda: metrics.thread_failures == 1, timeout=30, what="the worker failure to be reported")
    assert stop.is_set()
    assert any("MemoryError: injected" in failure for failure in runner.failures)
