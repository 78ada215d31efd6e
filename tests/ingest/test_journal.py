"""The spill journal (ingest.journal) on a real disk, and TradeProducer spilling to it against the real broker:
order kept across segments and restarts, a torn tail skipped, a crashed process's journal replayed first, and the
memory bound held while Kafka does not answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import journal as journals
from ingest.journal import Journal, JournalError, JournalRecord, journal_name, open_journal
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer, held_bytes
from ingest.records import decode
from tests.conftest import ROOT, wait_for
from tests.faults import FrozenKafka
from tests.ingest.pipeline import read_topic
from tests.ingest.test_producer import topic_pair, trades


def records(count: int, first: int = 0) -> list[JournalRecord]:
    """``count`` distinct records (values of varying length, some dead letters)."""
    return [
        (
            journals.DEAD_LETTER if i % 97 == 0 else journals.TRADE,
            f"binance:SYM{i % 3}".encode(),
            (f'{{"n":{i}}}' + "x" * (i % 50)).encode(),
            1_723_161_255_342 + i,
        )
        for i in range(first, first + count)
    ]


def read_all(journal: Journal, chunk: int = 4096) -> list[JournalRecord]:
    out: list[JournalRecord] = []
    while batch := journal.read(chunk):
        out.extend(batch)
    return out


@pytest.fixture
def frozen() -> Iterator[FrozenKafka]:
    kafka = FrozenKafka()
    yield kafka
    kafka.thaw()


def test_records_read_back_in_order_across_segments_and_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**8, segment_bytes=2000, sync_bytes=500)
    written = records(300)
    for start in range(0, 300, 7):
        assert journal.append(written[start : start + 7])
    journal.sync()
    assert len(list(tmp_path.glob("*.seg"))) > 3  # small segments: the order must hold across files
    first = journal.read(1500)
    assert 0 < len(first) < 300
    journal.close()

    # Nothing was removed: a new process reads it all again, in order, then what it writes itself.
    again = Journal(tmp_path, max_bytes=10**8, segment_bytes=2000)
    assert again.leftover_segments > 3
    assert again.unread
    assert again.append(records(5, first=300))
    again.sync()
    assert read_all(again) == written + records(5, first=300)
    assert again.read(4096) == []
    again.close()


def test_a_segment_is_finished_only_once_read_and_closed_and_removal_frees_its_bytes(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**8, segment_bytes=10**6)
    assert journal.append(records(50))
    journal.sync()
    assert len(journal.read(10**6)) == 50
    assert journal.take_finished() == []  # the write segment: more may come
    journal.rotate()
    finished = journal.take_finished()
    assert len(finished) == 1
    assert journal.bytes > 0
    journal.remove(finished)
    assert journal.bytes == 0
    assert not list(tmp_path.glob("*.seg"))
    journal.close()


def test_a_torn_tail_is_skipped_and_counted(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**8)
    assert journal.append(records(20))
    journal.close()
    (segment,) = tmp_path.glob("*.seg")
    whole = segment.stat().st_size
    # A crash mid-write: half of one more frame.
    segment.write_bytes(segment.read_bytes() + journals.encode(records(1, first=20))[:9])

    again = Journal(tmp_path, max_bytes=10**8)
    assert read_all(again) == records(20)
    assert again.torn_bytes == 9
    assert not again.unread
    again.close()
    assert segment.stat().st_size == whole + 9  # skipped, never written after: this process used a new segment


def test_a_damaged_record_ends_its_segment_and_the_next_segment_is_still_read(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**8, segment_bytes=1)  # one segment per sync
    assert journal.append(records(3))
    journal.sync()
    assert journal.append(records(3, first=3))
    journal.close()
    first, _second = sorted(tmp_path.glob("*.seg"))
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # the checksum of the last frame fails
    first.write_bytes(bytes(data))

    again = Journal(tmp_path, max_bytes=10**8)
    assert read_all(again) == records(2) + records(3, first=3)
    assert again.torn_bytes > 0
    again.close()


def test_the_journal_refuses_past_its_bound_and_a_second_process(tmp_path: Path) -> None:
    one = records(1)
    journal = Journal(tmp_path, max_bytes=3 * len(journals.encode(one)))
    assert journal.append(one)
    assert journal.append(one)
    assert journal.append(one)
    assert not journal.append(one)
    assert journal.bytes == 3 * len(journals.encode(one))
    with pytest.raises(JournalError, match="in use by another process"):
        Journal(tmp_path, max_bytes=10**6)
    journal.close()


def test_a_bad_journal_dir_names_the_setting(settings: object, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings.INGEST_JOURNAL_DIR = blocker  # type: ignore[attr-defined]
    with pytest.raises(JournalError, match="INGEST_JOURNAL_DIR"):
        open_journal("binance", ["btcusdt"])
    settings.INGEST_JOURNAL_BYTES = 0  # type: ignore[attr-defined]
    assert open_journal("binance", ["btcusdt"]) is None


def test_each_symbol_set_of_an_exchange_has_its_own_journal(settings: object, tmp_path: Path) -> None:
    settings.INGEST_JOURNAL_DIR = tmp_path  # type: ignore[attr-defined]
    one = open_journal("kraken", ["BTC/USD", "ETH/USD"])
    other = open_journal("kraken", ["SOL/USD"])  # a second process of the exchange, its other symbols: no conflict
    assert one is not None
    assert other is not None
    assert one.directory.name == "kraken-btc-usd_eth-usd"
    assert one.directory != other.directory
    assert journal_name("kraken", ["ETH/USD", "BTC/USD"]) == one.directory.name  # the order given does not matter
    assert len(journal_name("binance", [f"sym{i}usdt" for i in range(50)])) == len("binance-") + 16
    one.close()
    other.close()


CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from ingest import journal as journals
journal = journals.Journal(Path(sys.argv[1]), max_bytes=10**8, segment_bytes=3000)
for i in range(0, 400, 10):
    journal.append([(journals.TRADE, b"binance:BTCUSDT", b'{"n":%d}' % n, n) for n in range(i, i + 10)])
journal.sync()
# half a frame written and fsynced, then the process dies without closing anything
journal._pending += journals.encode([(journals.TRADE, b"binance:BTCUSDT", b"torn", 0)])[:7]
journal.sync()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crashed_process_journal_is_replayed_first_then_newer_records(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], cwd=ROOT, env=dict(os.environ), check=False
    )
    assert done.returncode == -signal.SIGKILL

    trades_topic, dlq_topic = topic_pair(partitions=3)
    metrics = IngestMetrics("binance")
    journal = Journal(tmp_path, max_bytes=10**8)  # the lock died with the process
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, journal=journal)
    newer = trades(50, first_id=1000)
    assert producer.publish(newer) == 50  # while the old journal is not replayed, newer records queue behind it
    assert producer.replay_journal(timeout=60)
    assert producer.close(timeout=30) == 0

    messages = read_topic(trades_topic, 450)
    btc = [value for key, value in messages if key == b"binance:BTCUSDT"]
    assert btc[:400] == [b'{"n":%d}' % n for n in range(400)]  # every whole record, in order, the torn one not
    assert [decode(v).trade_id for v in btc[400:]] == [t.trade_id for t in newer]
    assert journal.torn_bytes == 7
    assert metrics.journal_replayed == 450
    assert metrics.journal_spilled == 50
    assert not list(tmp_path.glob("*.seg"))  # all acknowledged: removed


def test_past_the_memory_bound_records_spill_and_are_replayed_in_order_once(
    tmp_path: Path, frozen: FrozenKafka
) -> None:
    trades_topic, dlq_topic = topic_pair(partitions=3)
    metrics = IngestMetrics("binance")
    bound = 60_000  # bytes: ~250 of these trades
    journal = Journal(tmp_path, max_bytes=10**8, segment_bytes=20_000)
    producer = TradeProducer(
        metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, buffer_bytes=bound, journal=journal
    )
    producer.prepare()
    sent = trades(1500) + trades(1500, symbol="ETHUSDT")
    interleaved = [t for pair in zip(sent[:1500], sent[1500:], strict=True) for t in pair]
    frozen.freeze()  # the broker answers nothing: what is published now is held, then spilled
    for i in range(0, len(interleaved), 20):
        assert producer.publish(interleaved[i : i + 20]) == 20  # never blocks: the journal takes the overflow
    assert metrics.journal_spilled > 2000
    assert metrics.buffered_bytes_max <= bound
    assert metrics.buffered_bytes == held_bytes((t.encode() for t in interleaved[: metrics.buffered]), metrics.buffered)
    frozen.thaw()
    # A clean stop while Kafka answers replays the journal first: nothing is left for the next start.
    assert producer.close(timeout=60) == 0
    assert metrics.trades_published == 3000
    assert not list(tmp_path.glob("*.seg"))

    messages = read_topic(trades_topic, 3000)
    by_symbol: dict[str, list[int]] = {}
    for _key, value in messages:
        record = decode(value)
        by_symbol.setdefault(record.symbol, []).append(record.trade_id)
    assert by_symbol == {"BTCUSDT": list(range(1, 1501)), "ETHUSDT": list(range(1, 1501))}  # in order, once
    assert metrics.journal_replayed == metrics.journal_spilled
    assert metrics.buffered_bytes_max <= bound  # replay stayed under the bound too
    assert (metrics.buffered, metrics.buffered_bytes, metrics.journal_bytes) == (0, 0, 0)


def test_a_full_journal_stops_reading_says_so_and_loses_nothing(
    tmp_path: Path, frozen: FrozenKafka, caplog: pytest.LogCaptureFixture
) -> None:
    trades_topic, dlq_topic = topic_pair(partitions=1)
    metrics = IngestMetrics("binance")
    journal = Journal(tmp_path, max_bytes=20_000, segment_bytes=4_000)  # ~70 trades on disk
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, buffer_trades=50, journal=journal)
    producer.prepare()
    sent = trades(300)
    frozen.freeze()
    for i in range(0, 100, 10):  # 50 in memory, the rest spilled
        assert producer.publish(sent[i : i + 10]) == 10
    results: list[int] = []
    with caplog.at_level("ERROR", logger="ingest.producer"):
        blocked = threading.Thread(target=lambda: results.append(sum(producer.publish([t]) for t in sent[100:])))
        blocked.start()
        wait_for(lambda: metrics.journal_full_waits == 1, timeout=30, what="the journal to fill up")
        assert blocked.is_alive()  # back-pressure: the reader waits instead of dropping
        assert journal.bytes <= 20_000
        frozen.thaw()
        blocked.join(120)
    assert results == [200]
    assert any("journal full" in r.message for r in caplog.records)
    wait_for(lambda: metrics.trades_published == 300, timeout=60, what="every trade acknowledged")
    assert producer.close(timeout=30) == 0
    assert [decode(v).trade_id for _k, v in read_topic(trades_topic, 300)] == list(range(1, 301))
