"""manage.py record: raw frames with their receive time, hourly zstd files, crash safety, and the round trip
record -> simulate_exchange --replay -> ingest -> Kafka holding the same trades."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command

from ingest.records import decode
from simulator.config import SimulatorConfig
from simulator.recorder import FrameRecorder, RecorderError
from simulator.replay import open_binary, read_trades
from simulator.server import BackgroundSimulator
from tests.conftest import ChildProcess, KafkaTopics, manage
from tests.ingest.pipeline import (
    BTC_0808,
    read_topic,
    recorded_trades,
    start_ingest,
    start_simulator,
    wait_exit,
)

Spawn = Callable[..., ChildProcess]
# 2024-08-08 23:59:59.9 UTC and 2024-08-09 00:00:00.1 UTC: two hours, two files
LATE = 1_723_161_599_900_000_000
EARLY = LATE + 200_000_000


def lines(path: Path) -> list[bytes]:
    with open_binary(path) as handle:
        return handle.read().splitlines()


def trade_frame(trade_id: int) -> bytes:
    return (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161599900,"s":"BTCUSDT","t":%d,'
        b'"p":"61837.63000000","q":"0.02000000","T":1723161599899,"m":true,"M":true}}' % trade_id
    )


def test_frames_rotate_hourly_into_finished_zstd_files_that_replay(tmp_path: Path) -> None:
    recorder = FrameRecorder(tmp_path, "binance")
    recorder.write(trade_frame(1), LATE)
    recorder.write(b'{"result":null,\n "id":1}', LATE + 1)  # a newline inside a frame stays one line
    recorder.write(trade_frame(2), EARLY)
    recorder.write(trade_frame(3), LATE + 5)  # another connection's older stamp never reopens a past hour
    recorder.close()
    first = tmp_path / "binance-2024-08-08T23.frames.zst"
    second = tmp_path / "binance-2024-08-09T00.frames.zst"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [first.name, second.name]
    assert recorder.finished == [first, second]
    assert lines(first) == [b"%d %s" % (LATE, trade_frame(1)), b'%d {"result":null,  "id":1}' % (LATE + 1)]
    assert lines(second)[0] == b"%d %s" % (EARLY, trade_frame(2))
    assert first.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    assert [r.trade_id for r in read_trades(second)] == [2, 3]
    assert [r.received_at for r in read_trades(first)] == [LATE // 1_000_000]
    # restarted within an hour that already has a file: a new file beside it, nothing overwritten
    again = FrameRecorder(tmp_path, "binance")
    again.write(trade_frame(4), EARLY + 1)
    again.close()
    assert [r.trade_id for r in read_trades(tmp_path / "binance-2024-08-09T00.1.frames.zst")] == [4]
    assert [r.trade_id for r in read_trades(second)] == [2, 3]


def _crash_after_writing(directory: str, count: int) -> None:
    recorder = FrameRecorder(directory, "binance", flush_interval=3600)
    for trade_id in range(1, count + 1):
        recorder.write(trade_frame(trade_id), LATE + trade_id)
    recorder.flush()
    recorder.write(trade_frame(count + 1), LATE + count + 1)  # written, never flushed: lost in the crash
    os._exit(0)  # no close, no atexit, no buffers flushed: what a SIGKILL leaves


def test_a_crash_leaves_a_part_that_replays_and_the_next_recorder_finishes(tmp_path: Path) -> None:
    child = multiprocessing.get_context("fork").Process(target=_crash_after_writing, args=(str(tmp_path), 500))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    part = tmp_path / "binance-2024-08-08T23.frames.part"
    assert [p.name for p in tmp_path.glob("binance-*")] == [part.name]  # nothing finished, nothing corrupt
    # simulate_exchange --replay reads a .part as it is, up to its last flushed line
    assert [r.trade_id for r in read_trades(part)] == list(range(1, 501))
    # cut mid-block (a crash during a write): still every complete line before the cut
    cut = tmp_path / "cut.part"
    cut.write_bytes(part.read_bytes()[:-7])
    assert [r.trade_id for r in read_trades(cut)] == list(range(1, 500))
    cut.replace(part)

    recorder = FrameRecorder(tmp_path, "binance")  # finishes the leftover at start
    recorder.close()
    finished = tmp_path / "binance-2024-08-08T23.frames.zst"
    assert recorder.finished == [finished]
    assert not part.exists()
    # the complete lines, without the one the crash cut
    assert [r.trade_id for r in read_trades(finished)] == list(range(1, 500))
    assert all(line.endswith(b"}}") for line in lines(finished))


def test_lines_reach_the_disk_every_flush_interval_without_a_close(tmp_path: Path) -> None:
    recorder = FrameRecorder(tmp_path, "binance", flush_interval=0.0)
    now = time.time_ns()
    recorder.write(trade_frame(1), now)
    (part,) = tmp_path.glob("binance-*.frames.part")
    assert part.read_bytes() == b"%d %s\n" % (now, trade_frame(1))  # on disk while the recorder still runs
    recorder.close()


def test_one_recorder_per_exchange_and_directory(tmp_path: Path) -> None:
    first = FrameRecorder(tmp_path, "binance")
    with pytest.raises(RecorderError, match="another recorder of binance"):
        FrameRecorder(tmp_path, "binance")
    FrameRecorder(tmp_path, "kraken").close()  # another exchange may share the directory
    first.close()
    FrameRecorder(tmp_path, "binance").close()  # released on close
    with pytest.raises(RecorderError, match="lower-case"):
        FrameRecorder(tmp_path, "Binance/..")
    (tmp_path / "file").write_text("")
    with pytest.raises(RecorderError, match="--out"):
        FrameRecorder(tmp_path / "file" / "sub", "binance")


def test_command_in_process_records_and_reports_its_files(tmp_path: Path) -> None:
    trades = list(read_trades(BTC_0808))[:100]
    out = io.StringIO()
    with BackgroundSimulator(SimulatorConfig(speed=0, ping_interval=None), iter(trades)) as sim:
        call_command(
            "record",
            *("--exchange", "binance", "--symbols", "btcusdt", "--out", str(tmp_path / "rec")),
            *("--url", sim.url, "--max-frames", "100"),
            stdout=out,
        )
    (path,) = sorted((tmp_path / "rec").glob("*.frames.zst"))
    assert "recorded 100 frames" in out.getvalue()
    assert str(path) in out.getvalue()
    assert [r.trade_id for r in read_trades(path)] == [t.trade_id for t in trades]
    # a second recorder on the same directory while one runs is refused with the reason
    holder = FrameRecorder(tmp_path / "rec", "binance")
    with pytest.raises(CommandError, match="another recorder"):
        call_command("record", "--exchange", "binance", "--symbols", "btcusdt", "--out", str(tmp_path / "rec"))
    holder.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://x"], "--url must be a ws://"),
        (["--max-frames", "-1"], "--max-frames"),
        (["--flush-interval", "0"], "--flush-interval"),
        (["--symbols", "btc usdt"], "--symbols"),
    ],
)
def test_command_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--exchange": "binance", "--symbols": "btcusdt", "--out": str(tmp_path), "--url": "ws://127.0.0.1:1"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [item for pair in base.items() for item in pair]
    with pytest.raises(CommandError, match=message):
        call_command("record", *argv)


@pytest.mark.integration
@pytest.mark.slow
def test_round_trip_record_then_replay_through_ingest_gives_the_same_trades(
    kafka_topics: KafkaTopics, spawn: Spawn, tmp_path: Path
) -> None:
    expected = recorded_trades()
    assert len(expected) == 9757
    _sim, port = start_simulator(spawn, "--exchange", "binance", "--replay", str(BTC_0808), "--speed", "0")
    out = tmp_path / "capture"
    recorder = spawn(
        manage(
            "record",
            "--exchange",
            "binance",
            "--symbols",
            "btcusdt",
            "--out",
            str(out),
            "--url",
            f"ws://127.0.0.1:{port}",
            "--max-frames",
            "9757",
        ),
        name="record",
    )
    assert wait_exit(recorder) == 0, recorder.output()[-3000:]
    assert "recorded 9757 frames" in recorder.output()
    files = sorted(out.glob("*.frames.zst"))
    assert files
    assert not list(out.glob("*.part"))

    _replayed, replay_port = start_simulator(
        spawn, "--exchange", "binance", "--replay", *map(str, files), "--speed", "0"
    )
    ingest = start_ingest(spawn, "binance", replay_port, "btcusdt", "--max-trades", "9757")
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    messages = read_topic(kafka_topics.trades, 9757)
    assert len(messages) == 9757
    records = sorted((decode(value) for _, value in messages), key=lambda r: r.trade_id)
    assert [(r.trade_id, r.price, r.quantity, r.is_buyer_maker, r.trade_time, r.event_time) for r in records] == [
        (t["t"], t["p"], t["q"], t["m"], t["T"], t["E"]) for t in expected
    ]
    assert read_topic(kafka_topics.dlq, 0, timeout=5) == []


def test_a_part_whose_file_was_already_renamed_is_removed_not_recompressed(tmp_path: Path) -> None:
    recorder = FrameRecorder(tmp_path, "binance")
    recorder.write(trade_frame(1), LATE)
    recorder.close()
    finished = tmp_path / "binance-2024-08-08T23.frames.zst"
    # a crash between the rename and the unlink: the .part is stale, the finished file complete
    (tmp_path / "binance-2024-08-08T23.frames.part").write_bytes(b"%d %s\n" % (LATE, trade_frame(9)))
    again = FrameRecorder(tmp_path, "binance")
    again.close()
    assert again.finished == []
    assert [p.name for p in tmp_path.glob("binance-*")] == [finished.name]
    assert [r.trade_id for r in read_trades(finished)] == [1]


def test_record_captures_the_book_channels_in_a_layout_the_simulator_replays(tmp_path: Path, settings: Any) -> None:
    """Coinbase ``level2`` and Binance depth (with its REST snapshot line) are recorded as ``<recv ns> <frame>``
    lines that ``simulate_exchange --replay`` reads back: the same events, and the same book as the source."""
    from simulator.depth import read_coinbase_l2, read_depth
    from tests.books.frames import coinbase_messages, coinbase_reference
    from tests.ingest.recordings import COINBASE_RECORDING

    source = read_coinbase_l2([COINBASE_RECORDING])
    assert source is not None
    config = SimulatorConfig(exchange="coinbase", speed=0, ping_interval=None, heartbeat_interval=3600)
    with BackgroundSimulator(config, read_trades(COINBASE_RECORDING), depth=source) as sim:
        call_command(
            "record",
            *("--exchange", "coinbase", "--symbols", "BTC-USD,ETH-USD", "--out", str(tmp_path / "cb")),
            *("--url", sim.url, "--channels", "books", "--max-frames", str(4 + len(source))),
            stdout=io.StringIO(),
        )
    (path,) = sorted((tmp_path / "cb").glob("*.frames.zst"))
    replayed = read_coinbase_l2([path])
    assert replayed is not None
    assert [e.data for e in replayed.events] == [e.data for e in source.events]
    replayed.due()  # the whole tape played: its book is the recording's last one
    for product, (bids, asks) in coinbase_reference(coinbase_messages()).items():
        found = replayed.book(product)
        assert found is not None
        book, _ = found
        assert dict(book.bids.levels) == bids
        assert dict(book.asks.levels) == asks

    depth = read_depth([BTC_0808])
    assert depth is not None
    binance = BackgroundSimulator(SimulatorConfig(speed=0, ping_interval=None), read_trades(BTC_0808), depth=depth)
    with binance as sim:
        settings.BINANCE_REST_URL = sim.url.replace("ws://", "http://")
        call_command(
            "record",
            *("--exchange", "binance", "--symbols", "btcusdt", "--out", str(tmp_path / "bn")),
            *("--url", sim.url, "--channels", "books", "--max-frames", "201"),
            stdout=io.StringIO(),
        )
    (path,) = sorted((tmp_path / "bn").glob("*.frames.zst"))
    recorded = read_depth([path])
    assert recorded is not None
    assert [e.data for e in recorded.events] == [e.data for e in depth.events[:200]]
    # The REST snapshot line, taken right after the first event: the simulator serves its book from it.
    (snapshot_line,) = [line for line in lines(path) if b'{"lastUpdateId"' in line]
    assert orjson.loads(snapshot_line.split(b" ", 1)[1])["lastUpdateId"] >= depth.events[0].last_id
    assert recorded.snapshot("BTCUSDT", 5) is not None
