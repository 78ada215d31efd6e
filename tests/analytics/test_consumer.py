"""TradeConsumer and ``consume_trades`` on the real Kafka, PostgreSQL and Redis (per-test topics and group)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from analytics.consumer import ConsumerConfig, InvalidRatioError, TradeConsumer
from analytics.groups import market_group
from analytics.models import Trade
from analytics.payloads import trade_item
from analytics.windows import SymbolWindow
from cryptoproject.kafka import client_config
from ingest.records import TradeRecord, make_trade
from tests.conftest import DATA, manage, subprocess_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def real_trades(limit: int | None = None) -> list[TradeRecord]:
    """Trades of the bundled Binance recording, parsed here independently of the ingest code."""
    trades: list[TradeRecord] = []
    with gzip.open(DATA / "binance-spot-ws" / "btcusdt_20240808.gz", "rt") as fh:
        for line in fh:
            _, _, frame = line.partition(" ")
            if '"btcusdt@trade"' not in frame:
                continue
            d = orjson.loads(frame)["data"]
            trades.append(
                make_trade(
                    exchange="binance",
                    symbol=d["s"],
                    trade_id=d["t"],
                    price=d["p"],
                    quantity=d["q"],
                    is_buyer_maker=d["m"],
                    trade_time=d["T"],
                    event_time=d["E"],
                    received_at=int(line.split(" ", 1)[0]) // 1_000_000,
                )
            )
            if limit is not None and len(trades) >= limit:
                break
    return trades


def produce(values: list[tuple[bytes | None, bytes]], topic: str | None = None) -> None:
    producer = KafkaProducer(**client_config(), acks="all", linger_ms=5)
    try:
        for key, value in values:
            producer.send(topic or settings.KAFKA_TRADES_TOPIC, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def produce_trades(records: list[TradeRecord]) -> None:
    produce([(r.key, r.encode()) for r in records])


def offsets() -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, committed offsets) per partition of the test topic for the test group."""
    probe = KafkaConsumer(**client_config(), group_id=settings.KAFKA_CONSUMER_GROUP, enable_auto_commit=False)
    try:
        parts = [TopicPartition(settings.KAFKA_TRADES_TOPIC, p) for p in range(6)]
        ends = {tp.partition: end for tp, end in probe.end_offsets(parts).items()}
        committed = {tp.partition: probe.committed(tp) or 0 for tp in parts}
        return ends, committed
    finally:
        probe.close()


def fully_committed() -> bool:
    ends, committed = offsets()
    return ends == committed


def dlq_messages(expected: int) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        settings.KAFKA_DLQ_TOPIC, **client_config(), auto_offset_reset="earliest", consumer_timeout_ms=2000
    )
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < expected and time.monotonic() < deadline:
            for message in consumer:
                found.append(orjson.loads(message.value))
        return found
    finally:
        consumer.close()


class Runner:
    """A TradeConsumer in a thread of this process, with a recording dispatcher (no Celery needed)."""

    def __init__(self, config: ConsumerConfig | None = None) -> None:
        self.windows: list[SymbolWindow] = []
        self.consumer = TradeConsumer(config or ConsumerConfig(batch_size=500, batch_ms=50), dispatch=self.dispatch)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def dispatch(self, windows: list[SymbolWindow]) -> None:
        self.windows.extend(windows)

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test through self.error
            self.error = exc
        finally:
            connection.close()

    def __enter__(self) -> Runner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def receive(layer: Any, channel: str, timeout: float = 10.0) -> dict[str, Any]:
    async def _receive() -> dict[str, Any]:
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(_receive)()


@pytest.fixture
def trades() -> list[TradeRecord]:
    return real_trades(1500)


def assert_one_row_per_trade(records: list[TradeRecord]) -> None:
    keys = {(r.exchange, r.symbol, r.trade_id) for r in records}
    stored = set(Trade.objects.values_list("exchange", "symbol", "trade_id"))
    assert Trade.objects.count() == len(keys)
    assert stored == keys


def test_consumer_stores_each_trade_once_commits_end_offsets_and_publishes(kafka_topics, trades):
    produce_trades(trades)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(market_group("binance", "BTCUSDT"), channel)
    config = ConsumerConfig(batch_size=400, batch_ms=50, metrics_interval_s=0.2)
    with Runner(config) as runner:
        wait_for(lambda: Trade.objects.count() == len(trades), what="every trade stored")
        wait_for(fully_committed, what="offsets committed to the end")
        key = runner.consumer.metrics_key
        client = redis.Redis.from_url(settings.REDIS_URL)
        snapshot = wait_for(
            lambda: (raw := client.get(key)) and (s := orjson.loads(raw))["stored"] == len(trades) and s,
            what="metrics snapshot in Redis",
        )
        assert 0 < client.ttl(key) <= 30
    assert runner.error is None
    assert_one_row_per_trade(trades)
    stored = Trade.objects.get(trade_id=trades[0].trade_id)
    assert str(stored.price).rstrip("0") == trades[0].price.rstrip("0")
    assert snapshot["consumed"] == len(trades)
    assert snapshot["batches"] >= 4
    assert snapshot["lag_total"] == 0
    # Windows cover every stored trade, per batch and symbol, never per trade.
    assert sum(w.count for w in runner.windows) == len(trades)
    assert len(runner.windows) == snapshot["batches"]
    assert min(w.start_ms for w in runner.windows) == min(r.trade_time for r in trades)
    assert max(w.end_ms for w in runner.windows) == max(r.trade_time for r in trades)
    # The live tape: at most 50 trades per push, newest last, ending with the newest trade of all.
    pushes: list[dict[str, Any]] = []
    while not pushes or pushes[-1]["trades"][-1]["trade_id"] != trades[-1].trade_id:
        pushes.append(receive(layer, channel)["payload"])
    for payload in pushes:
        assert payload["kind"] == "trades"
        assert (payload["exchange"], payload["symbol"]) == ("binance", "BTCUSDT")
        assert 0 < len(payload["trades"]) <= 50
        times = [t["t"] for t in payload["trades"]]
        assert times == sorted(times)
    assert len(pushes) < len(trades) / 50
    last = pushes[-1]["trades"][-1]
    # The tape's trade is the API's item of the stored row: one wire shape.
    stored = Trade.objects.get(exchange="binance", symbol="BTCUSDT", trade_id=trades[-1].trade_id)
    assert last == trade_item(stored)


def test_same_records_delivered_twice_leave_one_row_per_trade(kafka_topics, trades):
    produce_trades(trades)
    produce_trades(trades)
    with Runner() as runner:
        wait_for(fully_committed, what="offsets committed to the end")
        wait_for(lambda: runner.consumer.metrics.consumed == 2 * len(trades), what="both copies consumed")
    assert_one_row_per_trade(trades)
    assert runner.consumer.metrics.stored == len(trades)
    assert runner.consumer.metrics.duplicates == len(trades)


def test_bad_records_go_to_the_dlq_with_reason_and_the_worker_goes_on(kafka_topics, trades):
    good = trades[:300]
    bad_values = [
        b"{not json",
        orjson.dumps({**good[0].to_dict(), "v": 99}),
        orjson.dumps({k: v for k, v in good[1].to_dict().items() if k != "price"}),
        orjson.dumps({**good[2].to_dict(), "trade_id": 10**12, "quantity": "-1"}),
        # Valid for the schema, but too large for the column: PostgreSQL refuses it, the rest of its batch is stored.
        orjson.dumps({**good[3].to_dict(), "trade_id": 10**12 + 1, "price": "1E+25"}),
    ]
    values = [(r.key, r.encode()) for r in good]
    for i, bad in enumerate(bad_values):
        values.insert(50 * i + 10, (b"binance:BTCUSDT", bad))
    produce(values)
    with Runner() as runner:
        wait_for(fully_committed, what="offsets committed past the bad records")
        wait_for(lambda: runner.consumer.metrics.dead_lettered == len(bad_values), what="bad records counted")
    assert runner.error is None
    assert_one_row_per_trade(good)
    letters = dlq_messages(len(bad_values))
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == len(bad_values)
    assert any(r.startswith("malformed JSON") for r in reasons)
    assert "unsupported schema version 99" in reasons
    assert "missing field 'price'" in reasons
    assert any("quantity must be positive" in r for r in reasons)
    assert any(r.startswith("rejected by PostgreSQL: numeric field overflow") for r in reasons)
    for letter in letters:
        assert letter["topic"] == kafka_topics.trades
        assert letter["source"] == f"consumer:{kafka_topics.group}"
        assert isinstance(letter["partition"], int)
        assert isinstance(letter["offset"], int)
        assert letter["raw"]


def test_exploding_invalid_ratio_stops_without_committing(kafka_topics, trades):
    produce([(b"binance:BTCUSDT", b'{"v": 1}')] * 600 + [(r.key, r.encode()) for r in trades[:100]])
    runner = Runner(ConsumerConfig(batch_size=1000, batch_ms=500))
    with runner:
        wait_for(lambda: not runner.thread.is_alive(), what="the worker to stop by itself")
    assert isinstance(runner.error, InvalidRatioError)
    assert "invalid" in str(runner.error)
    _, committed = offsets()
    assert sum(committed.values()) == 0


def test_two_consumers_share_partitions_and_store_exactly_once(kafka_topics):
    records = real_trades(3000)
    # Spread over several symbols so every partition has work.
    spread = [make_trade(**_fields(r, f"SYM{i % 6}")) for i, r in enumerate(records)]
    produce_trades(spread[:1500])
    first = Runner(ConsumerConfig(batch_size=200, batch_ms=100))
    with first:
        wait_for(lambda: Trade.objects.count() > 0, what="the first consumer to store")
        second = Runner(ConsumerConfig(batch_size=200, batch_ms=100))
        with second:
            produce_trades(spread[1500:])
            wait_for(lambda: len(second.consumer.assignment()) > 0, what="the second consumer's share")
            wait_for(lambda: Trade.objects.count() == len(spread), what="every trade stored")
            wait_for(fully_committed, what="offsets committed to the end")
    assert first.error is None
    assert second.error is None
    assert_one_row_per_trade(spread)


def _fields(r: TradeRecord, symbol: str) -> dict[str, Any]:
    data = r.to_dict()
    data.pop("v")
    data["symbol"] = symbol
    return data


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(kafka_topics, spawn, celery_worker_process):
    records = real_trades(5000)
    produce_trades(records)
    args = manage("consume_trades", "--batch-size", "100", "--batch-ms", "20")
    child = spawn(args, name="consume1")
    wait_for(lambda: sum(offsets()[1].values()) > 0 or child.proc.poll() is not None, what="a first commit")
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait(10)
    committed_at_kill = sum(offsets()[1].values())
    assert committed_at_kill < len(records), "the kill must land mid-run"
    # Nothing is ever committed before it is stored.
    assert Trade.objects.count() >= committed_at_kill
    restarted = spawn(args, name="consume2")
    wait_for(lambda: Trade.objects.count() == len(records), timeout=120, what="catch-up after restart")
    wait_for(fully_committed, what="offsets committed to the end")
    assert restarted.stop() == 0, restarted.output()
    assert_one_row_per_trade(records)
    # The real dispatch reached the real Celery worker: 1m candles cover every stored trade exactly once.
    from analytics.models import Candle

    def candles_complete() -> bool:
        total = sum(Candle.objects.filter(interval="1m", symbol="BTCUSDT").values_list("trade_count", flat=True))
        return total == len(records)

    wait_for(candles_complete, timeout=120, what="1m candles for every trade")


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``cut()`` refuses and drops connections, ``restore()`` reopens."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"], int(db["PORT"])))
    yield proxy
    proxy.cut()


def test_database_outage_commits_nothing_early_and_catches_up(kafka_topics, spawn, db_proxy):
    records = real_trades(1200)
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{db_proxy.port}/{db['NAME']}"
    env = subprocess_env(DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT="2", DATABASE_CONN_MAX_AGE="600")
    child = spawn(manage("consume_trades", "--batch-size", "200", "--batch-ms", "50"), env=env, name="consume")
    produce_trades(records[:600])
    wait_for(lambda: Trade.objects.count() == 600, what="the first half stored")
    wait_for(fully_committed, what="the first half committed")
    db_proxy.cut()
    produce_trades(records[600:])
    wait_for(lambda: child.output().count("batch delivery failed") >= 2, what="two failed attempts with backoff")
    ends, committed = offsets()
    assert sum(committed.values()) == 600
    assert sum(ends.values()) == 1200
    assert Trade.objects.count() == 600
    db_proxy.restore()
    wait_for(lambda: Trade.objects.count() == 1200, timeout=60, what="catch-up after the outage")
    wait_for(fully_committed, what="offsets committed to the end")
    assert "delivery recovered, partitions resumed" in child.output()
    assert child.stop(signal.SIGTERM) == 0, child.output()
    assert_one_row_per_trade(records)


def test_sigterm_finishes_and_exits_zero(kafka_topics, spawn):
    records = real_trades(300)
    produce_trades(records)
    child = spawn(manage("consume_trades", "--batch-size", "1000", "--batch-ms", "100"), name="consume")
    wait_for(fully_committed, what="offsets committed")
    assert child.stop(signal.SIGTERM) == 0, child.output()
    assert '"consumer stopped"' in child.output() or "consumer stopped" in child.output()
    assert_one_row_per_trade(records)


def test_max_records_and_idle_exit(kafka_topics, spawn):
    records = real_trades(250)
    produce_trades(records)
    child = spawn(manage("consume_trades", "--max-records", "250", "--batch-ms", "50"), name="consume")
    assert child.proc.wait(60) == 0, child.output()
    assert_one_row_per_trade(records)
    idle = spawn(manage("consume_trades", "--idle-exit", "1"), name="idle")
    assert idle.proc.wait(60) == 0, idle.output()
    assert "idle, exiting" in idle.output()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"DATABASE_URL": "postgres://crypto:crypto@127.0.0.1:9/crypto"}, "DATABASE_URL (127.0.0.1:9/crypto)"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9"),
    ],
)
def test_unreachable_servers_exit_non_zero_naming_the_address(spawn, override, named):
    child = spawn(manage("consume_trades"), env=subprocess_env(**override), name="unreachable")
    assert child.proc.wait(30) != 0
    assert named in child.output()


def test_bad_arguments_are_refused(spawn):
    child = spawn(manage("consume_trades", "--batch-size", "0"), name="badargs")
    assert child.proc.wait(30) != 0
    assert "--batch-size" in child.output()


def test_revocation_while_the_database_is_down_abandons_the_lost_records_uncommitted(kafka_topics, spawn, db_proxy):
    records = real_trades(1200)
    spread = [make_trade(**_fields(r, f"SYM{i % 6}")) for i, r in enumerate(records)]
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{db_proxy.port}/{db['NAME']}"
    env = subprocess_env(DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT="2")
    # A long batch window so the failing batch holds records of every partition.
    args = manage("consume_trades", "--batch-size", "1000", "--batch-ms", "1500")
    child = spawn(args, env=env, name="consume")
    produce_trades(spread[:600])
    wait_for(lambda: Trade.objects.count() == 600, what="the first half stored")
    wait_for(fully_committed, what="the first half committed")
    db_proxy.cut()
    produce_trades(spread[600:])
    wait_for(lambda: "batch delivery failed" in child.output(), what="a failed attempt")
    # A second member (with a working database) joins: the first gives up the records of the partitions it loses.
    with Runner(ConsumerConfig(batch_size=200, batch_ms=50)) as helper:
        wait_for(lambda: "in-flight records of lost partitions abandoned" in child.output(), what="records abandoned")
        wait_for(lambda: helper.consumer.metrics.stored > 0, what="the helper storing its share")
        _, committed = offsets()
        assert Trade.objects.count() >= sum(committed.values())
        db_proxy.restore()
        wait_for(lambda: Trade.objects.count() == len(spread), timeout=60, what="catch-up")
        wait_for(fully_committed, what="offsets committed to the end")
    assert helper.error is None
    assert child.stop(signal.SIGTERM) == 0, child.output()
    assert_one_row_per_trade(spread)


def test_command_stops_non_zero_when_the_invalid_ratio_explodes(kafka_topics, spawn):
    produce([(b"binance:BTCUSDT", b"[]")] * 600)
    child = spawn(manage("consume_trades", "--batch-size", "1000", "--batch-ms", "3000"), name="ratio")
    assert child.proc.wait(60) != 0
    assert "100 of the last 100 records on partition" in child.output()  # the per-partition limit (analytics.dlq)
    assert sum(offsets()[1].values()) == 0


def test_idle_exit_must_be_positive(spawn):
    child = spawn(manage("consume_trades", "--idle-exit", "0"), name="badidle")
    assert child.proc.wait(30) != 0
    assert "--idle-exit" in child.output()
