"""Coinbase and Kraken books end to end on the real servers: simulator -> ``manage.py ingest --channels books`` ->
Kafka ``market.books``, compared with books rebuilt independently in the test (:mod:`tests.books.frames`: plain
dicts, never :mod:`books`); each fault (a dropped, an out-of-order, a crossing delta; Kraken: a wrong checksum) is
detected, resynced by re-subscribing, and the book is right again; malformed frames are dead-lettered.

Coinbase replays its own recording (``data/coinbase-ws``, Advanced Trade ``level2``). Kraken's book frames are
derived by the simulator from the Binance depth recording (there is no Kraken book recording), so its reference is
the Binance book rebuilt independently, seen through the subscribed depth.
"""

from __future__ import annotations

import heapq
import signal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.conf import settings

from books.messages import SCHEMA_VERSION
from books.socket_stream import CoinbaseBookFeed, KrakenBookFeed
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from tests.books.frames import (
    BINANCE_FILES,
    PartJoiner,
    RefSide,
    binance_reference,
    coinbase_messages,
    coinbase_reference,
    join_parts,
)
from tests.books.test_binance_ingest import TopicReader
from tests.conftest import ChildProcess, KafkaTopics
from tests.ingest.pipeline import final_metrics, read_topic, start_ingest, start_simulator, wait_exit
from tests.ingest.recordings import COINBASE_RECORDING

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]
PRODUCTS = ("BTC-USD", "ETH-USD")
KRAKEN_SYMBOL = "BTC/USDT"  # the Binance recording's BTCUSDT in Kraken's spelling
#: the depth the Kraken tests subscribe: the checksum's 10 levels, so every change the book holds is checked
KRAKEN_DEPTH = 10


def levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(qty)) for price, qty in rows]


def as_rows(bids: RefSide, asks: RefSide) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """Both sides best first."""
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def coinbase_final() -> dict[str, tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]]:
    """Each product's book after every recorded ``l2_data`` event, rebuilt in the test."""
    return {product: as_rows(*book) for product, book in coinbase_reference(coinbase_messages()).items()}


def kraken_final() -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """The Binance recording's final book (rebuilt in the test) seen through a depth-10 subscription."""
    bids, asks, _ = binance_reference()
    return (
        [(price, bids[price]) for price in heapq.nlargest(KRAKEN_DEPTH, bids)],
        [(price, asks[price]) for price in heapq.nsmallest(KRAKEN_DEPTH, asks)],
    )


def equals(message: dict[str, Any], expected: tuple[list[Any], list[Any]]) -> bool:
    """A valid snapshot holding exactly ``expected``'s levels."""
    return (
        message["kind"] == "snapshot"
        and message["valid"]
        and (levels(message["bids"]), levels(message["asks"])) == expected
    )


def run_books(
    spawn: Spawn, topic: str, exchange: str, symbols: str, expected: dict[str, Any], *simulator_args: str
) -> tuple[ChildProcess, list[dict[str, Any]]]:
    """Replay into ``ingest --channels books`` until every symbol has a valid snapshot equal to its reference;
    stop ingest (SIGTERM) and return it with every book message."""
    files = [str(COINBASE_RECORDING)] if exchange == "coinbase" else list(map(str, BINANCE_FILES))
    _sim, port = start_simulator(spawn, "--exchange", exchange, "--replay", *files, "--speed", "0", *simulator_args)
    ingest = start_ingest(
        spawn,
        exchange,
        port,
        symbols,
        "--channels",
        "books",
        KAFKA_BOOKS_TOPIC=topic,
        BOOK_SNAPSHOT_EVERY_S="1",
        BOOK_KRAKEN_DEPTH=str(KRAKEN_DEPTH),
    )
    reader = TopicReader(topic)
    done: set[str] = set()
    joiner = PartJoiner()  # a Coinbase snapshot of the recording goes out in parts (BOOK_SNAPSHOT_PART_LEVELS)

    def synced(message: dict[str, Any]) -> bool:
        whole = joiner(message)
        if whole is not None and whole["symbol"] not in done and equals(whole, expected[whole["symbol"]]):
            done.add(whole["symbol"])
        return done == set(expected)

    try:
        reader.until(synced, timeout=180)
    finally:
        reader.close()
    ingest.proc.send_signal(signal.SIGTERM)
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    # Every message it published (periodic snapshots may follow the one the reader stopped at).
    published = final_metrics(ingest)["book_messages_published"]
    raw = [orjson.loads(value) for _, value in read_topic(topic, published)]
    assert len(raw) == published
    return ingest, join_parts(raw)


def check_messages(messages: list[dict[str, Any]], exchange: str) -> None:
    """The schema, and deltas only while their book is in sync (after a valid snapshot, before a break)."""
    valid: dict[str, bool] = {}
    for message in messages:
        assert message["v"] == SCHEMA_VERSION
        assert message["exchange"] == exchange
        if message["kind"] == "snapshot":
            valid[message["symbol"]] = message["valid"]
            if not message["valid"]:
                assert message["bids"] == message["asks"] == []  # a broken book shows nothing
            continue
        assert message["kind"] == "delta"
        assert message["valid"] is True
        assert valid.get(message["symbol"]), "a delta while the book was not in sync"
        assert message["t"] > 0
        if exchange == "kraken":
            assert message["first_id"] is None
            assert message["last_id"] is None
        else:
            assert message["first_id"] == message["last_id"] >= 0


def replay_deltas(messages: list[dict[str, Any]], symbol: str) -> list[list[tuple[Decimal, Decimal]]]:
    """A consumer's book: the last valid snapshot before the final one, plus every delta after it (plain dicts)."""
    mine = [m for m in messages if m["symbol"] == symbol]
    start = max(i for i, m in enumerate(mine[:-1]) if m["kind"] == "snapshot" and m["valid"])
    bids: RefSide = dict(levels(mine[start]["bids"]))
    asks: RefSide = dict(levels(mine[start]["asks"]))
    for message in mine[start + 1 :]:
        if message["kind"] == "snapshot":
            break
        for side, rows in ((bids, message["bids"]), (asks, message["asks"])):
            for price, qty in levels(rows):
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
    return list(as_rows(bids, asks))


# ------------------------------------------------------------------------------------------- Coinbase
def test_coinbase_books_end_to_end_equal_the_independent_rebuild(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str
) -> None:
    expected = coinbase_final()
    ingest, messages = run_books(spawn, books_topic, "coinbase", ",".join(PRODUCTS), expected)
    check_messages(messages, "coinbase")
    assert {m["kind"] for m in messages} == {"snapshot", "delta"}
    assert all(m["valid"] for m in messages)  # no break on a clean replay
    for product in PRODUCTS:
        last = [m for m in messages if m["symbol"] == product and m["kind"] == "snapshot"][-1]
        assert equals(last, expected[product])
        assert len(last["bids"]) > 1000
        assert len(last["asks"]) > 1000
    # A delta carries the recorded update's levels exactly as sent, under the message's sequence_num.
    updates = [
        e for m in coinbase_messages() if m["channel"] == "l2_data" for e in m["events"] if e["type"] == "update"
    ]
    delta = next(m for m in messages if m["kind"] == "delta")
    recorded = next(e for e in updates if e["product_id"] == delta["symbol"])
    assert delta["bids"] == [[u["price_level"], u["new_quantity"]] for u in recorded["updates"] if u["side"] == "bid"]
    assert delta["asks"] == [[u["price_level"], u["new_quantity"]] for u in recorded["updates"] if u["side"] == "offer"]
    metrics = final_metrics(ingest)
    assert (metrics["book_syncs"], metrics["book_resyncs"], metrics["book_malformed"]) == (2, 0, 0)
    assert metrics["book_events"] == 2 + len(updates)
    # The recording's Coinbase books (~46,000 levels for BTC-USD) went out in parts: more messages than read joined.
    assert metrics["book_messages_published"] > len(messages)
    assert read_topic(kafka_topics.trades, 0, timeout=3) == []  # --channels books: no trade


@pytest.mark.parametrize("fault", ["--depth-drop-every", "--depth-swap-every", "--depth-cross-every"])
def test_coinbase_each_fault_breaks_the_book_which_resubscribes_and_is_right_again(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str, fault: str
) -> None:
    expected = coinbase_final()
    ingest, messages = run_books(spawn, books_topic, "coinbase", ",".join(PRODUCTS), expected, fault, "250")
    check_messages(messages, "coinbase")
    broken = [m for m in messages if m["kind"] == "snapshot" and not m["valid"]]
    assert broken, "no break was published"
    metrics = final_metrics(ingest)
    assert metrics["book_resyncs"] == len(broken)
    # Each break resyncs; a snapshot slower than RESUBSCRIBE_S is asked again, and each one asked syncs.
    assert len(PRODUCTS) + metrics["book_resyncs"] <= metrics["book_syncs"]
    assert metrics["book_syncs"] <= len(PRODUCTS) + metrics["book_snapshot_requests"]
    assert metrics["book_snapshot_requests"] >= 1  # a resubscription, not a reconnect
    assert "book resubscribing" in ingest.output()
    for product in PRODUCTS:
        last = [m for m in messages if m["symbol"] == product and m["kind"] == "snapshot"][-1]
        assert equals(last, expected[product])


# ------------------------------------------------------------------------------------------- Kraken
def test_kraken_books_end_to_end_equal_the_independent_rebuild(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str
) -> None:
    expected = kraken_final()
    ingest, messages = run_books(spawn, books_topic, "kraken", KRAKEN_SYMBOL, {KRAKEN_SYMBOL: expected})
    check_messages(messages, "kraken")
    assert {m["kind"] for m in messages} == {"snapshot", "delta"}
    assert all(m["valid"] for m in messages)
    last = [m for m in messages if m["kind"] == "snapshot"][-1]
    assert equals(last, expected)
    # The deltas are complete (pushed-out levels deleted): a consumer applying them to the snapshot before gets
    # the same book as the last snapshot.
    assert replay_deltas(messages, KRAKEN_SYMBOL) == [levels(last["bids"]), levels(last["asks"])]
    metrics = final_metrics(ingest)
    assert (metrics["book_syncs"], metrics["book_resyncs"], metrics["book_malformed"]) == (1, 0, 0)
    assert metrics["book_messages_published"] == len(messages)  # a Kraken book of 100 levels: no parts


@pytest.mark.parametrize(
    "fault", ["--depth-drop-every", "--depth-swap-every", "--depth-cross-every", "--depth-checksum-every"]
)
def test_kraken_each_fault_breaks_the_book_which_resubscribes_and_is_right_again(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str, fault: str
) -> None:
    expected = kraken_final()
    ingest, messages = run_books(spawn, books_topic, "kraken", KRAKEN_SYMBOL, {KRAKEN_SYMBOL: expected}, fault, "700")
    check_messages(messages, "kraken")
    broken = [m for m in messages if m["kind"] == "snapshot" and not m["valid"]]
    assert broken, "no break was published"
    metrics = final_metrics(ingest)
    assert metrics["book_resyncs"] == len(broken)
    assert 1 + metrics["book_resyncs"] <= metrics["book_syncs"] <= 1 + metrics["book_snapshot_requests"]
    assert "book resubscribing" in ingest.output()
    reason = {
        "--depth-drop-every": "checksum_mismatch",
        "--depth-swap-every": "checksum_mismatch",
        "--depth-cross-every": "crossed",
        "--depth-checksum-every": "checksum_mismatch",
    }[fault]
    assert f"book break ({reason})" in ingest.output()
    assert equals([m for m in messages if m["kind"] == "snapshot"][-1], expected)


# ------------------------------------------------------------------------------------------- bad input
def test_malformed_coinbase_and_kraken_frames_are_dead_lettered_with_a_reason_and_counted(
    kafka_topics: KafkaTopics, books_topic: str
) -> None:
    metrics = IngestMetrics("coinbase")
    producer = TradeProducer(metrics)
    coinbase = CoinbaseBookFeed(["BTC-USD"], producer, metrics, snapshot_every_s=60)
    snapshot = {
        "channel": "l2_data",
        "sequence_num": 0,
        "events": [
            {
                "type": "snapshot",
                "product_id": "BTC-USD",
                "updates": [
                    {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "10", "new_quantity": "1"},
                    {"side": "offer", "event_time": "2026-08-09T21:05:48Z", "price_level": "11", "new_quantity": "1"},
                ],
            }
        ],
    }
    assert coinbase(orjson.dumps(snapshot), 1) == []
    assert coinbase.connection.books["BTC-USD"].valid
    bad_update = {"side": "bid", "event_time": "2026-08-09T21:05:49Z", "price_level": "-1", "new_quantity": "1"}
    bad = [
        b'{"channel":"l2_data","sequence_num":1,"events":[',  # truncated JSON
        orjson.dumps({"channel": "l2_data", "sequence_num": "x", "events": []}),
        orjson.dumps({**snapshot, "sequence_num": 1, "events": [{"type": "update", "product_id": "ETH-USD"}]}),
        orjson.dumps(
            {
                **snapshot,
                "sequence_num": 2,
                "events": [{"type": "update", "product_id": "BTC-USD", "updates": [bad_update]}],
            }
        ),
    ]
    answers = [coinbase(frame, 1) for frame in bad]
    # The refused update broke the book (it missed an update): the feed re-subscribes.
    assert answers[-1] == [
        '{"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"level2"}',
        '{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}',
    ]
    assert coinbase.syncs()["BTC-USD"].valid is False
    kraken = KrakenBookFeed(["BTC/USD"], producer, metrics, depth=10, snapshot_every_s=60)
    kraken_bad = [
        b'{"channel":"book","type":"update","data":[',
        b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[],"asks":[],"checksum":1}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.5,"qty":-1}],'
        b'"asks":[],"checksum":1}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":"x"}]}',
    ]
    kraken.connection_started()  # its subscription asks the snapshot: no resubscription for RESUBSCRIBE_S
    for frame in kraken_bad:
        assert kraken(frame, 1) == []
    producer.close(timeout=10)
    assert metrics.malformed == metrics.book_malformed == 8
    letters = [orjson.loads(value) for _, value in read_topic(kafka_topics.dlq, 8)]
    reasons = [letter["reason"] for letter in letters]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "sequence_num must be an integer, got 'x'"
    assert reasons[2] == "l2_data event of a product not subscribed: 'ETH-USD'"
    assert reasons[3] == "l2_data BTC-USD: price_level must be finite and not negative: '-1'"
    assert reasons[4].startswith("malformed JSON")
    assert reasons[5] == "book entry of a symbol not subscribed: 'ETH/USD'"
    assert reasons[6] == "book BTC/USD: bids qty must be finite and not negative: '-1'"
    assert reasons[7] == "book BTC/USD: checksum must be an integer, got 'x'"
    assert [letter["source"] for letter in letters] == ["ingest:coinbase:books"] * 4 + ["ingest:kraken:books"] * 4
    # Only the Coinbase book's sync and its break were published (the Kraken book never synced).
    published = [orjson.loads(value) for _, value in read_topic(settings.KAFKA_BOOKS_TOPIC, 2)]
    assert [(m["kind"], m["valid"]) for m in published] == [("snapshot", True), ("snapshot", False)]
