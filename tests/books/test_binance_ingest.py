"""Binance books end to end on the real servers: simulator (the recorded depth events and REST snapshot) ->
``manage.py ingest --channels books`` -> Kafka ``market.books``, compared with the book rebuilt independently from
the recording (:mod:`tests.books.frames`); a dropped delta, a malformed frame, and ``--channels trades``."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from kafka import KafkaConsumer

from books.messages import SCHEMA_VERSION
from books.stream import BinanceBookFeed
from cryptoproject.kafka import client_config
from ingest.management.commands.ingest import parse_channels
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from simulator.depth import LOOP_ID_GAP
from simulator.replay import read_trades
from tests.books.frames import BINANCE_FILES, binance_deltas, binance_reference, binance_snapshot, sorted_levels
from tests.conftest import ChildProcess, KafkaTopics, wait_for
from tests.ingest.pipeline import BTC_0808, final_metrics, read_topic, start_ingest, start_simulator, wait_exit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]
#: the last update id of the recording (``btcusdt_20240809.gz``'s last depth event)
FINAL_ID = binance_deltas()[-1]["u"]


class TopicReader:
    """Every message of a topic from the start, read on as they come."""

    def __init__(self, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, **client_config(), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.messages: list[tuple[bytes | None, dict[str, Any]]] = []

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 120) -> list[dict[str, Any]]:
        """The values read once one satisfies ``done``, which sees each message once, in topic order (it may keep
        state: joining a snapshot's parts)."""

        def found() -> bool:
            hit = False
            for batch in self.consumer.poll(timeout_ms=500, max_records=10_000).values():
                for record in batch:
                    value = orjson.loads(record.value)
                    self.messages.append((record.key, value))
                    hit = done(value) or hit
            return hit

        wait_for(found, timeout=timeout, interval=0, what="a book message")
        return [value for _, value in self.messages]

    def close(self) -> None:
        self.consumer.close()


def levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(qty)) for price, qty in rows]


def assert_equals_reference(snapshot: dict[str, Any]) -> None:
    """The snapshot message is the recording's book at its own ``last_id``, rebuilt in the test."""
    bids, asks, through = binance_reference(through=snapshot["last_id"])
    assert through == snapshot["last_id"]
    reference = sorted_levels(bids, asks)
    assert levels(snapshot["bids"]) == reference["bids"]
    assert levels(snapshot["asks"]) == reference["asks"]


def run_books(
    spawn: Spawn, books_topic: str, *simulator_args: str, **env: str
) -> tuple[ChildProcess, list[dict[str, Any]]]:
    """Replay both recordings into ``ingest --channels books`` (``env``: more settings for it) until a valid
    snapshot at the recording's last id is on the topic, all its parts; stop ingest (SIGTERM) and return it with
    every book message."""
    _sim, port = start_simulator(
        spawn, "--exchange", "binance", "--replay", *map(str, BINANCE_FILES), "--speed", "0", *simulator_args
    )
    # BOOK_SNAPSHOT_LIMIT=5000 reaches the whole book the recording makes (under 3,000 levels a side): every level
    # of the reference is then in the book too. With the default 1000, levels deeper than a (re)sync's snapshot that
    # no event touched since are missing, as from Binance itself (docs/BOOKS.md).
    ingest = start_ingest(
        spawn,
        "binance",
        port,
        "btcusdt",
        "--channels",
        "books",
        KAFKA_BOOKS_TOPIC=books_topic,
        BOOK_SNAPSHOT_EVERY_S="1",
        BOOK_SNAPSHOT_LIMIT="5000",
        **env,
    )
    reader = TopicReader(books_topic)
    try:
        reader.until(
            lambda m: (
                m["kind"] == "snapshot"
                and m["valid"]
                and m["last_id"] == FINAL_ID
                and m.get("part", [0, 1])[0] == m.get("part", [0, 1])[1] - 1
            )
        )
    finally:
        reader.close()
    ingest.proc.send_signal(signal.SIGTERM)
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    return ingest, [orjson.loads(value) for _, value in read_topic(books_topic, len(reader.messages))]


def check_chain(messages: list[dict[str, Any]]) -> None:
    """Deltas follow a valid snapshot and chain until the next break: the first after a snapshot straddles its
    ``last_id`` + 1 (Binance's rule: the REST snapshot may be ahead of the stream), each later one starts at the
    previous ``last_id`` + 1."""
    last: int | None = None
    straddle = False
    for message in messages:
        assert message["v"] == SCHEMA_VERSION
        assert message["exchange"] == "binance"
        assert message["symbol"] == "BTCUSDT"
        if message["kind"] == "snapshot":
            last = message["last_id"] if message["valid"] else None
            straddle = True
            continue
        assert message["kind"] == "delta"
        assert message["valid"] is True
        assert last is not None, "a delta while the book was not in sync"
        if straddle:
            assert message["first_id"] <= last + 1 <= message["last_id"]
        else:
            assert message["first_id"] == last + 1
        straddle = False
        assert message["t"] > 0
        last = message["last_id"]


def test_ingest_books_end_to_end_the_last_snapshot_equals_the_independent_rebuild(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str
) -> None:
    ingest, messages = run_books(spawn, books_topic)
    assert {m["kind"] for m in messages} == {"snapshot", "delta"}
    check_chain(messages)
    snapshots = [m for m in messages if m["kind"] == "snapshot"]
    assert all(m["valid"] for m in snapshots)  # no break on a clean replay
    last = snapshots[-1]
    assert last["last_id"] == FINAL_ID
    assert last["t"] == binance_deltas()[-1]["E"]
    assert_equals_reference(last)
    # Prices keep the exchange's own strings (Binance pads to 8 decimals).
    assert all(len(value.split(".")[1]) == 8 for row in last["bids"] + last["asks"] for value in row)
    # A delta carries the event's levels exactly as sent.
    by_id = {d["u"]: d for d in binance_deltas()}
    delta = next(m for m in messages if m["kind"] == "delta")
    assert (delta["bids"], delta["asks"], delta["t"]) == (
        by_id[delta["last_id"]]["b"],
        by_id[delta["last_id"]]["a"],
        by_id[delta["last_id"]]["E"],
    )
    metrics = final_metrics(ingest)
    assert metrics["book_syncs"] == 1
    assert metrics["book_resyncs"] == 0
    assert metrics["book_malformed"] == 0
    assert metrics["book_messages_published"] == len(messages)
    assert metrics["trades_published"] == 0
    assert read_topic(kafka_topics.trades, 0, timeout=3) == []  # --channels books: no trade


@pytest.mark.parametrize("fault", ["--depth-drop-every", "--depth-swap-every", "--depth-cross-every"])
def test_a_dropped_or_reordered_delta_breaks_the_book_which_resyncs_and_is_valid_and_right_again(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str, fault: str
) -> None:
    ingest, messages = run_books(spawn, books_topic, fault, "1000")
    check_chain(messages)
    broken = [m for m in messages if m["kind"] == "snapshot" and not m["valid"]]
    assert broken, "no break was published"
    assert all(m["bids"] == [] and m["asks"] == [] for m in broken)  # a broken book shows nothing
    metrics = final_metrics(ingest)
    assert metrics["book_resyncs"] == len(broken) >= 1
    assert metrics["book_syncs"] == 1 + metrics["book_resyncs"]
    last = [m for m in messages if m["kind"] == "snapshot"][-1]
    assert last["valid"] is True
    assert_equals_reference(last)


def test_a_present_looping_replay_breaks_the_book_at_each_loop_and_ingest_resyncs_onto_the_restarted_book(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str
) -> None:
    # make demo's sim-binance (--loop --present), at full speed: every pass restarts the recorded book under ids
    # moved past a hole, so ingest's book breaks there, resyncs from REST, and never publishes a delta out of sync.
    deltas = binance_deltas()
    first_u = deltas[0]["U"]
    shift = FINAL_ID - first_u + 1 + LOOP_ID_GAP  # what each pass adds to the recorded ids
    trades = [t for path in BINANCE_FILES for t in read_trades(path)]
    span = trades[-1].trade_time - trades[0].trade_time + 1  # what each pass adds to the recorded times
    started_ms = int(time.time() * 1000)
    _sim, port = start_simulator(
        spawn, "--exchange", "binance", "--replay", *map(str, BINANCE_FILES), "--speed", "0", "--loop", "--present"
    )
    ingest = start_ingest(
        spawn,
        "binance",
        port,
        "btcusdt",
        "--channels",
        "books",
        KAFKA_BOOKS_TOPIC=books_topic,
        BOOK_SNAPSHOT_EVERY_S="1",
        BOOK_SNAPSHOT_LIMIT="5000",
    )
    reader = TopicReader(books_topic)
    try:  # a delta applied in the second pass or later (after its valid snapshot)
        reader.until(lambda m: m["kind"] == "delta" and m["last_id"] > FINAL_ID)
    finally:
        reader.close()
    ingest.proc.send_signal(signal.SIGTERM)
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    messages = [orjson.loads(value) for _, value in read_topic(books_topic, len(reader.messages))]
    check_chain(messages)  # no delta while out of sync: the loop never chains onto the last pass's book
    broken = [m for m in messages if m["kind"] == "snapshot" and not m["valid"]]
    assert broken, "the loop did not break the book"
    assert final_metrics(ingest)["book_resyncs"] == len(broken)
    by_id = {d["u"]: d for d in deltas}
    moved: dict[int, set[int]] = {}  # pass -> how far its events' times moved
    for m in messages:
        if m["kind"] != "delta":
            continue
        passes, recorded = divmod(m["last_id"] - first_u, shift)
        event = by_id[first_u + recorded]
        assert (m["first_id"] - passes * shift, m["bids"], m["asks"]) == (event["U"], event["b"], event["a"])
        moved.setdefault(passes, set()).add(m["t"] - event["E"])
    assert len(moved) >= 2
    for passes, shifts in moved.items():
        assert len(shifts) == 1  # one delta per pass: the present clock's, plus the loop's span
        assert shifts == {min(moved[0]) + passes * span}
    assert min(moved[0]) >= started_ms - trades[0].trade_time  # on the present clock: the first trade at its start
    last = [m for m in messages if m["kind"] == "snapshot" and m["valid"]][-1]
    assert last["last_id"] > FINAL_ID
    passes = (last["last_id"] - first_u) // shift
    assert_equals_reference({**last, "last_id": last["last_id"] - passes * shift})  # the restarted book, exactly


def test_channels_trades_publishes_nothing_to_market_books(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str
) -> None:
    _sim, port = start_simulator(spawn, "--exchange", "binance", "--replay", str(BTC_0808), "--speed", "0")
    ingest = start_ingest(
        spawn, "binance", port, "btcusdt", "--channels", "trades", "--max-trades", "9757", KAFKA_BOOKS_TOPIC=books_topic
    )
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    assert len(read_topic(kafka_topics.trades, 9757)) == 9757
    assert read_topic(books_topic, 0, timeout=3) == []
    metrics = final_metrics(ingest)
    assert metrics["book_events"] == metrics["book_snapshots"] == metrics["book_snapshot_requests"] == 0


def test_malformed_depth_frames_are_dead_lettered_with_a_reason_and_counted(
    kafka_topics: KafkaTopics, books_topic: str
) -> None:
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics)
    snapshot = binance_snapshot()
    feed = BinanceBookFeed(
        ["BTCUSDT"], producer, metrics, lambda symbol, limit: snapshot, snapshot_limit=1000, snapshot_every_s=60
    )
    first = binance_deltas()[0]
    bad = [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"',  # truncated JSON
        orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {**first, "b": [["-1.0", "2"]]}}),
        orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {**first, "u": "x"}}),
        orjson.dumps({"stream": "ethusdt@depth@100ms", "data": {**first, "s": "ETHUSDT"}}),
    ]
    for frame in bad:
        assert feed(frame, 1) is False
    producer.close(timeout=10)
    assert metrics.malformed == metrics.book_malformed == 4
    assert metrics.book_events == 0
    letters = [orjson.loads(value) for _, value in read_topic(kafka_topics.dlq, 4)]
    reasons = [letter["reason"] for letter in letters]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "depthUpdate: b price must be finite and not negative: '-1.0'"
    assert reasons[2] == "depthUpdate: u must be an integer, got 'x'"
    assert "not subscribed" in reasons[3]
    assert {letter["source"] for letter in letters} == {"ingest:binance:books"}
    assert read_topic(settings.KAFKA_BOOKS_TOPIC, 0, timeout=2) == []


def test_channels_default_to_books_where_the_descriptor_has_them_and_bad_ones_are_refused() -> None:
    assert parse_channels(None, "binance") == {"trades", "books"}
    assert parse_channels(None, "coinbase") == {"trades", "books"}
    assert parse_channels(None, "kraken") == {"trades", "books"}
    assert parse_channels(None, "okx") == {"trades"}
    assert parse_channels("trades", "binance") == {"trades"}
    assert parse_channels(" books ,trades", "binance") == {"trades", "books"}
    with pytest.raises(CommandError, match="--channels: okx has no books channel"):
        call_command("ingest", "--exchange", "okx", "--symbols", "BTC-USDT", "--channels", "books")
    with pytest.raises(CommandError, match="--channels: give a comma-separated subset of trades,books, got 'depth'"):
        call_command("ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "depth")
    with pytest.raises(CommandError, match="--max-trades counts trades: it needs the trades channel"):
        call_command(
            "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "books", "--max-trades", "5"
        )
