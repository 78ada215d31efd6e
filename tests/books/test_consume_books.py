"""``consume_books`` on the real servers: simulator (the Binance recording) -> ``ingest --channels books`` -> Kafka
-> the books consumer -> PostgreSQL, compared with books and metrics computed independently from the recording
(:mod:`tests.books.frames`, plain dicts); a consumer killed and restarted stores exactly the same rows; malformed
messages go to the dead-letter topic; breaks store a not-valid row and drop the book."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
import pytest
from django.db import connection, transaction
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from books import storage
from books.book import L2Book
from books.consumer import BooksConsumer, BooksConsumerConfig
from books.models import BookMetric, BookSnapshot, ReplayCheckpoint
from cryptoproject.kafka import TopicSpec, admin_client, client_config, ensure_topics
from tests.books.frames import RefSide, binance_deltas, binance_snapshot, sorted_levels
from tests.books.frames import apply_rows as ref_apply
from tests.books.test_binance_ingest import FINAL_ID, assert_equals_reference, run_books
from tests.conftest import ChildProcess, KafkaTopics, manage, subprocess_env, unique, wait_for
from tests.faults import freeze_kafka, thaw_kafka
from tests.ingest.pipeline import read_topic, wait_exit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
Spawn = Callable[..., ChildProcess]
Q18 = Decimal("1e-18")


@pytest.fixture
def books_topic(kafka_topics: KafkaTopics, settings: Any) -> Iterator[str]:
    """A fresh ``market.books`` stand-in (one partition) and books consumer group, deleted afterwards."""
    name = unique("test.books")
    ensure_topics([TopicSpec(name, 1, {})])
    settings.KAFKA_BOOKS_TOPIC = name
    settings.KAFKA_BOOKS_CONSUMER_GROUP = unique("test-books")
    yield name
    admin = admin_client()
    try:
        admin.delete_topics([name])
    except Exception:  # noqa: BLE001 - cleanup is best effort; names are unique anyway
        pass
    finally:
        admin.close()


def consume(**overrides: Any) -> tuple[BooksConsumer, list[list[tuple[str, str, L2Book, bool]]]]:
    """Run the consumer in this process until idle; return it and what its ``on_books`` hook was given."""
    pushed: list[list[tuple[str, str, L2Book, bool]]] = []
    values: dict[str, Any] = {"idle_exit_s": 3.0, "batch_size": 300, "batch_ms": 100, **overrides}
    consumer = BooksConsumer(BooksConsumerConfig.from_settings(**values), on_books=pushed.append)
    consumer.run()
    return consumer, pushed


def stored_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored metric and snapshot row, without ids, in key order."""
    metric_fields = [f.name for f in BookMetric._meta.fields if f.name != "id"]
    snapshot_fields = [f.name for f in BookSnapshot._meta.fields if f.name != "id"]
    return (
        list(BookMetric.objects.order_by("exchange", "symbol", "second").values_list(*metric_fields)),
        list(BookSnapshot.objects.order_by("exchange", "symbol", "window_start").values_list(*snapshot_fields)),
    )


def ref_metrics(bids: RefSide, asks: RefSide) -> dict[str, Decimal]:
    """The 1 s metrics computed here from plain dicts, rounded as the columns store them."""
    best_bid, best_ask = max(bids), min(asks)
    mid = (best_bid + best_ask) / 2

    def depth(side: RefSide, keep: Callable[[Decimal], bool]) -> Decimal:
        return sum((q for p, q in side.items() if keep(p)), Decimal(0))

    b10 = depth(bids, lambda p: p >= mid * Decimal("0.999"))
    a10 = depth(asks, lambda p: p <= mid * Decimal("1.001"))
    return {
        "best_bid": best_bid,
        "best_ask": best_ask,
        "spread": best_ask - best_bid,
        "mid": mid.quantize(Q18, ROUND_HALF_UP),
        "bid_depth_10bps": b10,
        "ask_depth_10bps": a10,
        "bid_depth_1pct": depth(bids, lambda p: p >= mid * Decimal("0.99")),
        "ask_depth_1pct": depth(asks, lambda p: p <= mid * Decimal("1.01")),
        "imbalance": ((b10 - a10) / (b10 + a10) if b10 + a10 else Decimal(0)).quantize(Q18, ROUND_HALF_UP),
    }


def expected_from_recording(
    messages: list[dict[str, Any]], every_s: int, depth: int
) -> tuple[dict[int, tuple[int, dict[str, Decimal]]], dict[int, tuple[int, dict[str, list[tuple[Decimal, Decimal]]]]]]:
    """Per second and per window of the deltas on the topic: (last update id, the book after the window's last
    delta) rebuilt from the recording (its REST snapshot and events), never from the topic's levels."""
    deltas = [m for m in messages if m["kind"] == "delta"]
    last_of_second = {d["t"] // 1000: d["last_id"] for d in deltas}
    last_of_window = {d["t"] // (every_s * 1000) * every_s: d["last_id"] for d in deltas}
    wanted_seconds = {u: s for s, u in last_of_second.items()}
    wanted_windows = {u: w for w, u in last_of_window.items()}
    snapshot = binance_snapshot()
    bids: RefSide = {}
    asks: RefSide = {}
    ref_apply(bids, snapshot["bids"])
    ref_apply(asks, snapshot["asks"])
    seconds: dict[int, tuple[int, dict[str, Decimal]]] = {}
    windows: dict[int, tuple[int, dict[str, list[tuple[Decimal, Decimal]]]]] = {}
    for event in binance_deltas():
        if event["u"] <= snapshot["lastUpdateId"]:
            continue
        ref_apply(bids, event["b"])
        ref_apply(asks, event["a"])
        if event["u"] in wanted_seconds:
            seconds[wanted_seconds[event["u"]]] = (event["u"], ref_metrics(bids, asks))
        if event["u"] in wanted_windows:
            levels = sorted_levels(bids, asks)
            windows[wanted_windows[event["u"]]] = (
                event["u"],
                {"bids": levels["bids"][:depth], "asks": levels["asks"][:depth]},
            )
    return seconds, windows


def decimal_levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in rows]


def committed(group: str, topic: str) -> int:
    consumer = KafkaConsumer(**client_config(), group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


@pytest.mark.slow
def test_consume_books_end_to_end_stores_the_independent_books_and_a_killed_consumer_stores_the_same_rows(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str, settings: Any
) -> None:
    _ingest, messages = run_books(spawn, books_topic)
    assert all(m["valid"] for m in messages)
    consumer, pushed = consume()
    assert consumer.metrics.consumed == len(messages)
    assert consumer.metrics.applied == len(messages)
    assert consumer.metrics.breaks == consumer.metrics.dead_lettered == 0
    assert consumer.metrics.valid_markets == 1

    every, depth = settings.BOOK_STORE_EVERY_S, settings.BOOK_DEPTH_LEVELS
    seconds, windows = expected_from_recording(messages, every, depth)
    metrics = list(BookMetric.objects.order_by("second"))
    assert [int(m.second.timestamp()) for m in metrics] == sorted(seconds)
    for row in metrics:
        last_id, expected = seconds[int(row.second.timestamp())]
        assert (row.exchange, row.symbol, row.valid, row.last_id) == ("binance", "BTCUSDT", True, last_id)
        assert {name: getattr(row, name) for name in expected} == expected, row.second
    snapshots = list(BookSnapshot.objects.order_by("window_start"))
    assert [int(s.window_start.timestamp()) for s in snapshots] == sorted(windows)
    for snap in snapshots:
        last_id, levels = windows[int(snap.window_start.timestamp())]
        assert snap.valid
        assert snap.last_id == last_id
        assert (decimal_levels(snap.bids), decimal_levels(snap.asks)) == (levels["bids"], levels["asks"])
        assert len(snap.bids) == len(snap.asks) == depth
        assert snap.t // (every * 1000) * every == int(snap.window_start.timestamp())
    # The last stored snapshot is the recording's final book, at its last update id and event time.
    final = snapshots[-1]
    assert (final.last_id, final.t) == (FINAL_ID, binance_deltas()[-1]["E"])
    # Exchange strings kept (Binance pads to 8 decimals).
    assert all(len(v.split(".")[1]) == 8 for row in final.bids + final.asks for v in row)
    # The live hook: once per batch, with the book that changed, valid.
    assert pushed
    assert all(len(batch) == 1 for batch in pushed)
    exchange, symbol, book, valid = pushed[-1][0]
    assert (exchange, symbol, valid) == ("binance", "BTCUSDT", True)
    assert book.as_lists(depth) == {"bids": final.bids, "asks": final.asks}

    # The same topic again, in a fresh group, by `manage.py consume_books` SIGKILLed mid-stream and restarted.
    uninterrupted = stored_rows()
    BookMetric.objects.all().delete()
    BookSnapshot.objects.all().delete()
    group = unique("test-books-kill")
    env = subprocess_env(KAFKA_BOOKS_TOPIC=books_topic, KAFKA_BOOKS_CONSUMER_GROUP=group)
    first = spawn(manage("consume_books", "--batch-size", "40", "--batch-ms", "50"), env=env, name="books")
    at_kill = wait_for(lambda: committed(group, books_topic) >= len(messages) // 4, timeout=120, interval=0.02)
    first.proc.send_signal(signal.SIGKILL)
    assert wait_exit(first) == -signal.SIGKILL
    assert at_kill < len(messages), "the consumer finished before it was killed: nothing was tested"
    assert stored_rows() != uninterrupted  # killed mid-stream, for real
    second = spawn(manage("consume_books", "--idle-exit", "3", "--batch-size", "300"), env=env, name="books")
    assert wait_exit(second) == 0, second.output()[-3000:]
    assigned = next(orjson.loads(line) for line in second.output().splitlines() if "books partition assigned" in line)
    assert assigned["committed"] >= at_kill
    assert assigned["replay_from"] < assigned["committed"]  # the book was rebuilt from a snapshot before it
    stopped = next(orjson.loads(line) for line in second.output().splitlines() if "books consumer stopped" in line)
    assert stopped["replayed"] == assigned["committed"] - assigned["replay_from"]
    assert stopped["consumed"] == len(messages) - assigned["committed"]
    replay = ReplayCheckpoint.objects.filter(group=group).order_by("-through").first()
    assert replay is not None
    assert replay.through == len(messages)
    assert stored_rows() == uninterrupted


def test_a_snapshot_in_parts_is_stored_as_the_whole_book(
    spawn: Spawn, kafka_topics: KafkaTopics, books_topic: str, settings: Any
) -> None:
    # 300 levels a side a message: the recording's book (under 3,000 levels a side) goes out in up to 10 parts,
    # as a Coinbase BTC-USD book of ~46,000 levels does at the default 5,000 (one message would pass Kafka's 1 MB).
    _ingest, messages = run_books(spawn, books_topic, BOOK_SNAPSHOT_PART_LEVELS="300")
    snapshots = [m for m in messages if m["kind"] == "snapshot"]
    parted = [m for m in snapshots if "part" in m]
    assert parted, "no snapshot went out in parts"
    assert all(len(m["bids"]) <= 300 and len(m["asks"]) <= 300 for m in snapshots)
    # The final snapshot's parts, in order, make the recording's book at its last id (rebuilt in the test).
    final_parts = [m for m in snapshots if m["last_id"] == FINAL_ID and m["t"] == snapshots[-1]["t"]]
    count = final_parts[-1]["part"][1]
    assert [m["part"] for m in final_parts[-count:]] == [[i, count] for i in range(count)]
    whole = {**final_parts[-1], "bids": [], "asks": []}
    for part in final_parts[-count:]:
        whole["bids"] += part["bids"]
        whole["asks"] += part["asks"]
    assert_equals_reference(whole)

    consumer, _pushed = consume()
    assert consumer.metrics.incomplete_snapshots == consumer.metrics.breaks == consumer.metrics.dead_lettered == 0
    whole_snapshots = len(snapshots) - sum(1 for m in parted if m["part"][0] != m["part"][1] - 1)
    assert consumer.metrics.applied == len(messages) - len(snapshots) + whole_snapshots
    every, depth = settings.BOOK_STORE_EVERY_S, settings.BOOK_DEPTH_LEVELS
    _seconds, windows = expected_from_recording(messages, every, depth)
    stored = list(BookSnapshot.objects.order_by("window_start"))
    assert [int(s.window_start.timestamp()) for s in stored] == sorted(windows)
    for snap in stored:
        last_id, expected = windows[int(snap.window_start.timestamp())]
        assert (snap.valid, snap.last_id) == (True, last_id)
        assert (decimal_levels(snap.bids), decimal_levels(snap.asks)) == (expected["bids"], expected["asks"])


def produce(topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(**client_config(), acks="all")
    for value in values:
        producer.send(topic, key=b"binance:BTCUSDT", value=value)
    producer.flush(10)
    producer.close()


def book_message(
    kind: str,
    first: int | None,
    last: int | None,
    t: int | None,
    valid: bool = True,
    bids: list[list[str]] | None = None,
    asks: list[list[str]] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "kind": kind,
            "first_id": first,
            "last_id": last,
            "t": t,
            "valid": valid,
            "bids": bids or [],
            "asks": asks or [],
            "received_at": 1,
        }
    )


SNAP = {"bids": [["100.00", "1.0"], ["99.00", "2.0"]], "asks": [["101.00", "1.5"], ["102.00", "3.0"]]}
T0 = 1_723_161_000_000  # 2024-08-09 00:30:00 UTC, a window start


def test_malformed_messages_are_dead_lettered_and_breaks_drop_the_book_and_store_a_not_valid_row(
    kafka_topics: KafkaTopics, books_topic: str
) -> None:
    malformed = [
        b"{not json",
        orjson.dumps({"v": 3, "kind": "delta"}),
        b'{"v": 1, "exchange": "binance", "symbol": "BTCUSDT", "kind": "delta", "first_id": 12, "last_id": 12,'
        b' "t": 1, "valid": true, "bids": [[100.5, "1"]], "asks": []}',  # a float price
        book_message("delta", 12, None, T0 + 1),  # no last_id
        book_message("delta", 12, 12, T0 + 1, bids=[["-1", "1"]]),  # a negative price
        book_message("tick", 1, 1, T0),
    ]
    produce(
        books_topic,
        [
            book_message("delta", 5, 5, T0 - 10),  # before any snapshot: ignored
            book_message("snapshot", 10, 10, T0 + 100, bids=SNAP["bids"], asks=SNAP["asks"]),
            book_message("delta", 11, 11, T0 + 500, bids=[["100.00", "4.0"]]),
            *malformed,
            book_message("delta", 12, 12, T0 + 1500, asks=[["101.00", "0"]]),  # chains: the bad ones applied nothing
            book_message("snapshot", None, None, None, valid=False),  # a break published by ingest
            book_message("delta", 13, 13, T0 + 1600),  # no book: ignored
            book_message("snapshot", 20, 20, T0 + 12_000, bids=SNAP["bids"], asks=SNAP["asks"]),
            book_message("delta", 22, 22, T0 + 12_500, bids=[["100.00", "9"]]),  # does not chain: dropped
        ],
    )
    consumer, pushed = consume(batch_size=100)
    m = consumer.metrics
    assert (m.dead_lettered, m.breaks, m.invalid_snapshots, m.valid_markets) == (len(malformed), 1, 1, 0)
    letters = [orjson.loads(v) for _, v in read_topic(kafka_topics.dlq, len(malformed))]
    assert [letter["offset"] for letter in letters] == list(range(3, 3 + len(malformed)))
    reasons = [letter["reason"] for letter in letters]
    assert reasons[0].startswith("BookMessageError: malformed JSON")
    assert "unknown schema version '3'" in reasons[1]
    assert reasons[2] == "BookDataError: bids price must be a decimal string, got float"
    assert "a delta needs first_id, last_id, t" in reasons[3]
    assert "price must be finite and not negative" in reasons[4]
    assert "unknown kind 'tick'" in reasons[5]
    assert {letter["source"] for letter in letters} == {f"consumer:{consumer.group}"}

    metrics = {int(r.second.timestamp()) - T0 // 1000: r for r in BookMetric.objects.all()}
    assert sorted(metrics) == [0, 1, 12]
    # Second 0: the book after the delta at +500 (bid 100 -> 4.0); nothing within 10 bps of 100.5, so imbalance 0.
    row = metrics[0]
    assert (row.valid, row.last_id, row.t) == (True, 11, T0 + 500)
    assert (row.best_bid, row.best_ask, row.bid_depth_1pct, row.ask_depth_1pct, row.imbalance) == (100, 101, 4, 1.5, 0)
    # Second 1: the book broke after its delta at +1500 (the invalid snapshot): stored as not valid, no metrics.
    assert (metrics[1].valid, metrics[1].t, metrics[1].best_bid, metrics[1].last_id) == (False, T0 + 1500, None, None)
    # Second 12: the delta that does not chain broke the resynced book.
    assert (metrics[12].valid, metrics[12].t) == (False, T0 + 12_000)
    snaps = {int(s.window_start.timestamp()) - T0 // 1000: s for s in BookSnapshot.objects.all()}
    assert sorted(snaps) == [0, 10]
    assert (snaps[0].valid, snaps[0].bids, snaps[0].asks) == (False, [], [])
    assert (snaps[10].valid, snaps[10].t) == (False, T0 + 12_000)
    # The hook saw the book dropped: an empty book, not valid.
    exchange, symbol, book, valid = pushed[-1][0]
    assert (exchange, symbol, valid, book.best_bid()) == ("binance", "BTCUSDT", False, None)


def test_a_row_only_moves_forward_in_the_topic() -> None:
    from books.keeper import MetricRow, SnapshotRow

    def rows(offset: int, t: int) -> tuple[list[MetricRow], list[SnapshotRow]]:
        return (
            [MetricRow("x", "Y", T0 // 1000, t, offset, True, None, offset)],
            [SnapshotRow("x", "Y", T0 // 1000, t, offset, True, [["1", "2"]], [], offset)],
        )

    assert storage.store(*rows(5, T0 + 5), [storage.Checkpoint(0, 6, 3)], "g", "topic") == storage.StoreCounts(1, 1)
    assert storage.store(*rows(4, T0 + 4), [], "g", "topic") == storage.StoreCounts(0, 0)  # older: no change
    assert storage.store(*rows(5, T0 + 5), [], "g", "topic") == storage.StoreCounts(0, 0)  # the same: no change
    assert storage.store(*rows(9, T0 + 9), [storage.Checkpoint(0, 10, 9)], "g", "topic") == storage.StoreCounts(1, 1)
    assert BookMetric.objects.get().t == BookSnapshot.objects.get().t == T0 + 9
    assert storage.replay_from("g", "topic", 0, 9) == 3
    assert storage.replay_from("g", "topic", 0, 10) == 9
    assert storage.replay_from("g", "topic", 0, 5) is None
    assert storage.replay_from("g", "topic", 1, 10) is None
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM books_replaycheckpoint")
        assert cur.fetchone()[0] == 2


def test_a_lost_database_connection_pauses_retries_and_stores_the_batch_and_a_failing_hook_changes_nothing(
    kafka_topics: KafkaTopics, books_topic: str
) -> None:
    calls: list[int] = []
    pids: list[int] = []

    def on_books(changed: list[tuple[str, str, L2Book, bool]]) -> None:
        calls.append(len(changed))
        pids.append(connection.connection.info.backend_pid)  # the consumer thread's own PostgreSQL session
        raise RuntimeError("a live push failed")  # logged: storage goes on

    consumer = BooksConsumer(BooksConsumerConfig.from_settings(batch_size=100, batch_ms=100), on_books=on_books)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        produce(
            books_topic,
            [
                book_message("snapshot", 10, 10, T0 + 100, bids=SNAP["bids"], asks=SNAP["asks"]),
                book_message("delta", 11, 11, T0 + 500, bids=[["100.00", "4.0"]]),
            ],
        )
        wait_for(lambda: pids, timeout=60, what="the first batch")
        with connection.cursor() as cur:  # PostgreSQL ends the consumer's session: its next store fails
            cur.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
        produce(books_topic, [book_message("delta", 12, 12, T0 + 2500, bids=[["100.00", "5.0"]])])
        wait_for(lambda: BookMetric.objects.filter(last_id=12).exists(), timeout=60, what="the retried batch")
    finally:
        consumer.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert consumer.metrics.failures == 1
    assert consumer.metrics.batches == 2
    assert calls == [1, 1]
    assert list(BookMetric.objects.order_by("second").values_list("last_id", flat=True)) == [11, 12]


def test_an_offset_commit_that_fails_while_kafka_hangs_pauses_and_retries_the_batch_instead_of_exiting(
    kafka_topics: KafkaTopics, books_topic: str, settings: Any
) -> None:
    """Found by ``make chaos``'s books-kafka-down: the batch is stored, then its commit meets a broker that does not
    answer (frozen here, between the store and the commit, by holding the store on a table lock). The commit's
    ``KafkaTimeoutError`` is a transient failure like any other: the partitions pause, the same batch is stored
    again (a no-op) and committed once the broker is back; the consumer never exits."""
    pids: list[int] = []
    errors: list[BaseException] = []
    consumer = BooksConsumer(
        BooksConsumerConfig.from_settings(batch_size=100, batch_ms=100),
        on_books=lambda _changed: pids.append(connection.connection.info.backend_pid),
    )

    def run() -> None:
        try:
            consumer.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=run)
    thread.start()
    try:
        produce(
            books_topic,
            [
                book_message("snapshot", 10, 10, T0 + 100, bids=SNAP["bids"], asks=SNAP["asks"]),
                book_message("delta", 11, 11, T0 + 500, bids=[["100.00", "4.0"]]),
            ],
        )
        wait_for(lambda: pids, timeout=60, what="the first batch")
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("LOCK TABLE books_bookmetric IN EXCLUSIVE MODE")  # the consumer's next store waits here
            produce(books_topic, [book_message("delta", 12, 12, T0 + 2500, bids=[["100.00", "5.0"]])])

            def store_waits() -> bool:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pids[0]])
                return cur.fetchone() == ("Lock",)

            wait_for(store_waits, timeout=60, what="the store waiting on the lock")
            frozen = freeze_kafka()
        try:
            # The lock is released: the batch is stored and its commit meets the frozen broker (request timeout).
            wait_for(lambda: consumer.metrics.failures or errors, timeout=90, what="the commit failing")
        finally:
            thaw_kafka(frozen)
        group = settings.KAFKA_BOOKS_CONSUMER_GROUP
        wait_for(lambda: committed(group, books_topic) == 3 or errors, timeout=120, what="the batch committed")
    finally:
        consumer.stop()
        thread.join(60)
    assert errors == []
    assert consumer.metrics.failures >= 1
    assert committed(settings.KAFKA_BOOKS_CONSUMER_GROUP, books_topic) == 3
    assert list(BookMetric.objects.order_by("second").values_list("last_id", flat=True)) == [11, 12]


def test_the_consumer_pushes_each_changed_book_to_its_market_page_the_last_state_included(
    kafka_topics: KafkaTopics, books_topic: str
) -> None:
    """With a pusher (as ``manage.py consume_books`` runs by default), the stored books reach the market page's
    group: throttled, but the last state of the burst arrives, flushed by the loop once its slot frees."""
    from analytics.groups import market_group
    from books.live import BookPusher
    from tests.analytics.test_tasks import Listener

    produce(
        books_topic,
        [
            book_message("snapshot", 10, 10, T0 + 100, bids=SNAP["bids"], asks=SNAP["asks"]),
            *(book_message("delta", 10 + i, 10 + i, T0 + 100 + i, bids=[["100.00", f"{i}.5"]]) for i in range(1, 30)),
        ],
    )
    listener = Listener(market_group("binance", "BTCUSDT"))
    try:
        # one message a batch: the burst's books change faster than the five pushes a second allowed
        consumer = BooksConsumer(
            BooksConsumerConfig.from_settings(idle_exit_s=3.0, batch_size=1, batch_ms=50), pusher=BookPusher()
        )
        consumer.run()
        received = []
        while (payload := listener.receive(timeout=1.0)) is not None:
            received.append(payload)
    finally:
        listener.close()
    books = [p for p in received if p.get("kind") == "book"]
    assert 1 <= len(books) < 30  # throttled: not one push per message
    assert books[-1]["bids"][0] == ["100", "29.5"]  # the last state of the burst
    assert (books[-1]["t"], books[-1]["valid"]) == (T0 + 129, True)
