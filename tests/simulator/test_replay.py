"""The recorded-trade readers against the real files in data/ and generated ones (every layout, plain/gzip)."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.exchanges.base import rfc3339_ms
from ingest.records import TradeRecord
from simulator.replay import (
    ReplayError,
    ReplayFormat,
    detect_format,
    read_many,
    read_trades,
    to_millis,
    vision_symbol,
)
from tests.conftest import DATA

pytestmark = pytest.mark.unit

BTC_0808 = DATA / "binance-spot-ws" / "btcusdt_20240808.gz"
BTC_0809 = DATA / "binance-spot-ws" / "btcusdt_20240809.gz"
TRX_CSV = DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv"
COINBASE = DATA / "coinbase-ws" / "COINBASE.jsonl.zst"

VISION_ROWS = [
    (1000, "61837.63000000", "0.02000000", "1236.75260000", 1723161255342, "True", "True"),
    (1001, "61837.64000000", "0.10000000", "6183.76400000", 1723161255350, "False", "True"),
    (1002, "61830.00000000", "1.00000000", "61830.00000000", 1723161256000, "True", "True"),
]


def _ids(records: list[TradeRecord]) -> list[int]:
    return [record.trade_id for record in records]


def test_binance_ws_recording_0808_every_trade_exactly() -> None:
    records = list(read_trades(BTC_0808))
    assert detect_format(BTC_0808) is ReplayFormat.BINANCE_WS
    assert len(records) == 9757
    assert _ids(records) == list(range(3735683259, 3735693016))
    first = records[0]
    # Straight from the file's first trade line (its receive time prefix is nanoseconds).
    assert first == TradeRecord(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=3735683259,
        price="61837.63000000",
        quantity="0.02000000",
        is_buyer_maker=True,
        trade_time=1723161255342,
        event_time=1723161255343,
        received_at=1723161254087,
    )


def test_binance_ws_recording_0809_continues_0808_and_holds_a_whale() -> None:
    records = list(read_trades(BTC_0809))
    assert len(records) == 10147
    assert (records[0].trade_id, records[-1].trade_id) == (3735693016, 3735703162)
    whales = [record for record in records if record.notional() >= Decimal(100_000)]
    assert len(whales) == 1
    assert Decimal(400_000) < whales[0].notional() < Decimal(450_000)


def test_read_many_merges_files_by_trade_time() -> None:
    records = list(read_many([BTC_0809, BTC_0808]))
    assert len(records) == 9757 + 10147
    assert _ids(records) == list(range(3735683259, 3735703163))
    assert [r.trade_time for r in records] == sorted(r.trade_time for r in records)


def test_trade_stream_csv_microseconds_become_milliseconds() -> None:
    records = list(read_trades(TRX_CSV))
    assert detect_format(TRX_CSV) is ReplayFormat.TRADE_STREAM_CSV
    assert len(records) == 10000
    assert _ids(records) == list(range(348656870, 348666870))
    first = records[0]
    assert (first.symbol, first.price, first.quantity, first.is_buyer_maker) == ("TRXUSDT", "0.2312", "2619.4", True)
    assert (first.trade_time, first.event_time, first.received_at) == (1741046401271, 1741046401271, 1741046401272)
    assert records[1].is_buyer_maker is False


def test_coinbase_recording_gives_its_real_trades_deduplicated_in_time_order() -> None:
    records = list(read_trades(COINBASE))
    assert detect_format(COINBASE) is ReplayFormat.COINBASE_JSONL
    assert len(records) == 279
    assert {r.symbol for r in records} == {"BTC-USD", "ETH-USD"}
    assert sum(r.symbol == "BTC-USD" for r in records) == 147
    assert all(r.exchange == "coinbase" for r in records)
    assert [r.trade_time for r in records] == sorted(r.trade_time for r in records)
    by_key = {(r.symbol, r.trade_id): r for r in records}
    # The first update frame of the recording: a SELL (taker sold, so the buyer was the maker).
    trade = by_key[("BTC-USD", 1068572091)]
    assert (trade.price, trade.quantity, trade.is_buyer_maker) == ("65083.67", "0.01034361", True)
    assert trade.trade_time == rfc3339_ms("2026-08-09T21:05:48.167634Z")


def _write_vision(path: Path, *, header: bool, micros: bool, compress: bool) -> Path:
    lines = ["id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"] if header else []
    for row in VISION_ROWS:
        fields = list(row)
        fields[4] = row[4] * 1000 if micros else row[4]
        lines.append(",".join(str(f) for f in fields))
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("micros", [True, False])
@pytest.mark.parametrize("compress", [True, False])
def test_vision_csv_header_or_not_ms_or_us_plain_or_gzip(tmp_path: Path, header: bool, micros: bool, compress: bool):
    path = _write_vision(tmp_path / "BTCUSDT-trades-2024-08-08.csv", header=header, micros=micros, compress=compress)
    assert detect_format(path) is ReplayFormat.VISION_CSV
    records = list(read_trades(path))
    assert [(r.trade_id, r.price, r.quantity, r.trade_time, r.is_buyer_maker) for r in records] == [
        (row[0], row[1], row[2], row[4], row[5] == "True") for row in VISION_ROWS
    ]
    assert {r.symbol for r in records} == {"BTCUSDT"}
    assert all(r.event_time == r.trade_time == r.received_at for r in records)


def test_vision_csv_symbol_override_and_missing_symbol(tmp_path: Path) -> None:
    path = _write_vision(tmp_path / "trades.csv", header=True, micros=False, compress=False)
    with pytest.raises(ReplayError, match="--symbol"):
        list(read_trades(path))
    assert {r.symbol for r in read_trades(path, symbol="ethusdt")} == {"ETHUSDT"}
    assert vision_symbol("ETHBTC-trades-2025-01-01.csv.gz") == "ETHBTC"
    assert vision_symbol("whatever.csv") is None


def test_vision_csv_bad_rows_are_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(
        "1,1.5,2.0,3.0,1723161255342,True,True\n"
        "2,-1.5,2.0,3.0,1723161255342,True,True\n"  # negative price
        "3,1.5,2.0,3.0,1723161255342,maybe,True\n"  # not a boolean
        "garbage\n"
        "4,1.5,2.0,3.0,1723161255343,false,True\n"
    )
    assert _ids(list(read_trades(path))) == [1, 4]
    assert "skipping a bad line" in caplog.text


def test_binance_ws_bare_events_old_fields_other_streams_and_bad_lines(tmp_path: Path) -> None:
    event = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 7, "p": "1.10", "q": "2.00", "T": 1723161255342}
    lines = [
        orjson.dumps({"lastUpdateId": 1, "bids": [], "asks": []}),  # REST snapshot: no "stream"
        orjson.dumps({**event, "b": 11, "a": 12, "m": True, "M": True}),  # old event with order ids
        orjson.dumps({"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", "b": "1", "a": "2"}}),
        orjson.dumps({"stream": "btcusdt@aggTrade", "data": {**event, "e": "aggTrade", "m": False}}),
        orjson.dumps({"e": "trade", "note": "missing fields"}),
        b'{"e":"trade", broken',
        b"[1, 2, 3]",
        orjson.dumps({"stream": "btcusdt@trade", "data": "not an object", "x": "trade"}),
        orjson.dumps({"stream": "btcusdt@trade", "data": {**event, "t": 8, "m": False, "M": True}}),
    ]
    path = tmp_path / "frames.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert detect_format(path) is ReplayFormat.BINANCE_WS
    records = list(read_trades(path))
    assert [(r.trade_id, r.is_buyer_maker) for r in records] == [(7, True), (8, False)]
    assert records[0].received_at == records[0].event_time  # no receive-time prefix: the event time


def test_binance_ws_microsecond_recording(tmp_path: Path) -> None:
    data = {"e": "trade", "E": 1723161255343001, "s": "BTCUSDT", "t": 9, "p": "1", "q": "2", "T": 1723161255342999}
    path = tmp_path / "micro.gz"
    path.write_bytes(gzip.compress(b"1723161254087896 " + orjson.dumps({**data, "m": True, "M": True}) + b"\n"))
    (record,) = read_trades(path)
    assert (record.trade_time, record.event_time, record.received_at) == (1723161255342, 1723161255343, 1723161254087)


def test_layout_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(ReplayError, match="empty"):
        detect_format(empty)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("hello world\n")
    with pytest.raises(ReplayError, match="unknown layout"):
        detect_format(unknown)
    not_json = tmp_path / "bad.jsonl"
    not_json.write_text("{oops\n")
    with pytest.raises(ReplayError, match="not JSON"):
        detect_format(not_json)
    with pytest.raises(ReplayError, match="no such file"):
        read_trades(tmp_path / "missing.gz")
    bad_header = tmp_path / "stream.csv"
    bad_header.write_text("TimestampOfReceive,Stream,EventType\n1,2,3\n")
    with pytest.raises(ReplayError, match="missing column: EventTime, IsBuyerMarketMaker, Price, Quantity"):
        list(read_trades(bad_header))


def test_trade_stream_csv_skips_other_events_and_bad_rows(tmp_path: Path) -> None:
    header = TRX_CSV.read_text().splitlines()[0]
    rows = [
        "1741046401272286,trxusdt@trade,trade,1741046401271969,1741046401271497,TRXUSDT,1,0.2312,2619.4,1,True",
        "1741046401272286,trxusdt@aggTrade,aggTrade,1741046401271969,1741046401271497,TRXUSDT,2,0.2,1,1,True",
        "1741046401272286,trxusdt@trade,trade,1741046401271969,1741046401271497,TRXUSDT,3,abc,1,1,True",
        "",
        "1741046401272286,trxusdt@trade,trade,1741046401271969,1741046401271497,TRXUSDT,4,0.2313,1,0,True",
    ]
    path = tmp_path / "stream.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    assert _ids(list(read_trades(path))) == [1, 4]


def test_time_helpers() -> None:
    assert to_millis(1_723_161_255) == 1_723_161_255_000
    assert to_millis(1_723_161_255.5) == 1_723_161_255_500
    assert to_millis(1_723_161_255_342) == 1_723_161_255_342
    assert to_millis(1_723_161_255_342_999) == 1_723_161_255_342
    assert to_millis(1_723_161_255_342_999_123) == 1_723_161_255_342
    assert rfc3339_ms("2024-08-08T23:54:15Z") == 1_723_161_255_000
    assert rfc3339_ms("2024-08-08T23:54:15.342999999Z") == 1_723_161_255_342
    assert rfc3339_ms("2024-08-09T01:54:15.3+02:00") == 1_723_161_255_300
    assert rfc3339_ms("2024-08-08T22:54:15.342-01:00") == 1_723_161_255_342
    with pytest.raises(ValueError, match="RFC 3339"):
        rfc3339_ms("yesterday")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=6))
def test_fuzz_readers_never_raise_beyond_replay_error(tmp_path: Path, lines: list[bytes]) -> None:
    for prefix in (b"", b'{"stream":"x@trade","data":{"e":"trade"}}\n', b"id,price,qty\n", b"1,2,3,4,5,6,7\n"):
        path = tmp_path / "BTCUSDT-trades-fuzz.csv"
        path.write_bytes(prefix + b"\n".join(lines))
        try:
            records = list(read_trades(path))
        except ReplayError:
            continue
        assert all(isinstance(record, TradeRecord) for record in records)


def test_corrupt_compressed_file_is_a_replay_error(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(b'{"e":"trade"}\n' * 1000)[:40])
    with pytest.raises(ReplayError, match="cannot read"):
        list(read_trades(truncated))
    corrupt = tmp_path / "corrupt.zst"
    corrupt.write_bytes(b"\x28\xb5\x2f\xfd\n\x00\x00\x00")  # found by the fuzz test
    with pytest.raises(ReplayError, match="cannot read"):
        detect_format(corrupt)


def test_vision_futures_csv_without_is_best_match(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("5,61837.6,0.010,617.376,1723161255342,true\n6,61837.7,0.020,1236.754,1723161255343,false\n")
    assert detect_format(path) is ReplayFormat.VISION_CSV
    assert [(r.trade_id, r.price, r.is_buyer_maker) for r in read_trades(path)] == [
        (5, "61837.6", True),
        (6, "61837.7", False),
    ]


BOOK_TICKER = (
    b'1723161255341000000 {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT",'
    b'"b":"61837.63000000","B":"1.20000000","a":"61837.64000000","A":"0.50000000"}}'
)
TRADE_FRAME = (
    b'1723161255343000000 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.00100000","T":1723161255342,"m":true,"M":true}}'
)


def test_a_recording_that_starts_with_a_book_ticker_frame_is_a_binance_ws_recording(tmp_path: Path) -> None:
    # A book-ticker frame has a numeric receive-time prefix and 6 commas: once, that made it pass for an archive row.
    assert BOOK_TICKER.count(b",") == 6
    path = tmp_path / "btcusdt_real.gz"
    path.write_bytes(gzip.compress(BOOK_TICKER + b"\n" + TRADE_FRAME + b"\n" + BOOK_TICKER + b"\n"))
    assert detect_format(path) is ReplayFormat.BINANCE_WS
    (record,) = read_trades(path)
    assert (record.symbol, record.trade_id, record.received_at) == ("BTCUSDT", 3735683259, 1723161255343)


def test_a_file_of_neither_layout_names_the_file_and_what_was_seen(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"hello\n" + TRADE_FRAME + b"\nworld\n1,2.5,3,4,1723161255342,true\nmore prose\n")
    with pytest.raises(ReplayError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert str(path) in message
    assert "of the first 5 lines" in message
    assert "1 JSON frames" in message
    assert "1 data.binance.vision CSV" in message
    assert "3 neither" in message


_json_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False).map(str),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.dictionaries(st.text(max_size=8), _json_scalars, max_size=10),
    prefix=st.one_of(st.none(), st.integers(min_value=0, max_value=2**63)),
)
def test_fuzzed_first_frames_of_a_ws_recording_are_never_taken_for_csv(
    tmp_path: Path, first: dict[str, object], prefix: int | None
) -> None:
    # Any JSON object (any number of commas), with or without a numeric receive time, then real trade frames.
    line = orjson.dumps({"stream": "btcusdt@depth", "data": first})
    if prefix is not None:
        line = str(prefix).encode() + b" " + line
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(line + b"\n" + TRADE_FRAME + b"\n" + TRADE_FRAME + b"\n")
    assert detect_format(path) is ReplayFormat.BINANCE_WS


COMPRESSION_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.binary(max_size=120).filter(
        lambda b: b"\n" not in b and b"\r" not in b and bool(b.strip()) and not b.startswith(COMPRESSION_MAGIC)
    )
)
@example(first=b"TimestampOfReceive,")  # a truncated trade-stream header: hypothesis found it once
def test_fuzzed_first_lines_never_change_the_layout_of_a_vision_file(tmp_path: Path, first: bytes) -> None:
    # One odd first line (a truncated header, garbage) does not outvote the rows that follow it. A file that starts
    # with a compression format's magic number is read as that format (next test), whatever its name says.
    rows = [",".join(str(field) for field in row).encode() for row in VISION_ROWS]
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_bytes(b"\n".join([first, *rows, *rows]) + b"\n")
    assert detect_format(path) is ReplayFormat.VISION_CSV


@pytest.mark.parametrize("magic", COMPRESSION_MAGIC)
def test_a_file_with_a_compression_magic_but_no_valid_stream_is_refused_by_name(tmp_path: Path, magic: bytes) -> None:
    # Found by the fuzz test above: a first line that happens to start with gzip's magic number.
    rows = [",".join(str(field) for field in row).encode() for row in VISION_ROWS]
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_bytes(b"\n".join([magic + b"garbage", *rows]) + b"\n")
    with pytest.raises(ReplayError, match=r"BTCUSDT-trades-2024-08-08\.csv: cannot read the file"):
        detect_format(path)
