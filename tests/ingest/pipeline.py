"""Helpers for the ingest integration tests: a simulator child, an ingest child, reading topics back."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from kafka import KafkaConsumer

from cryptoproject.kafka import client_config
from ingest.exchanges import get
from ingest.records import decode
from tests.conftest import DATA, ChildProcess, manage, subprocess_env, wait_for

BTC_0808 = DATA / "binance-spot-ws" / "btcusdt_20240808.gz"
_LISTENING = re.compile(r"listening on ws://[0-9.]+:(\d+)")


def recorded_trades(path: Path = BTC_0808) -> list[dict[str, Any]]:
    """The ``data`` of every ``@trade`` frame of a hftbacktest recording, in order."""
    trades = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            frame = orjson.loads(line.split(b" ", 1)[1])
            if frame.get("stream", "").endswith("@trade"):
                trades.append(frame["data"])
    return trades


def start_simulator(spawn: Callable[..., ChildProcess], *args: str) -> tuple[ChildProcess, int]:
    """``simulate_exchange --port 0 <args>``; returns the child and the port it bound."""
    child = spawn(manage("simulate_exchange", "--host", "127.0.0.1", "--port", "0", *args), name="simulator")

    def port() -> int | None:
        assert child.proc.poll() is None, child.output()
        match = _LISTENING.search(child.output())
        return int(match.group(1)) if match else None

    return child, wait_for(port, timeout=60, what="the simulator to listen")


def ingest_env(exchange: str, port: int, **overrides: str) -> dict[str, str]:
    """A child environment pointing ``exchange``'s URLs (its descriptor's settings) at the simulator; the WebSocket
    URL keeps the real one's path (Kraken's ``/v2``)."""
    descriptor = get(exchange)
    urls = {descriptor.ws_url_setting: f"ws://127.0.0.1:{port}{urlsplit(descriptor.ws_url_default).path}"}
    if descriptor.rest_url_setting is not None:
        urls[descriptor.rest_url_setting] = f"http://127.0.0.1:{port}"
    return subprocess_env(**{**urls, **overrides})


def start_ingest(
    spawn: Callable[..., ChildProcess], exchange: str, port: int, symbols: str, *args: str, **env: str
) -> ChildProcess:
    """``manage.py ingest`` against the simulator on ``port`` (Prometheus off, metrics logged every second); the
    trades channel only unless ``args`` name ``--channels``."""
    channels = () if "--channels" in args else ("--channels", "trades")
    argv = manage(
        "ingest",
        "--exchange",
        exchange,
        "--symbols",
        symbols,
        "--metrics-port",
        "0",
        "--metrics-interval",
        "1",
        *channels,
        *args,
    )
    return spawn(argv, env=ingest_env(exchange, port, **env), name="ingest")


def wait_exit(child: ChildProcess, timeout: float = 180) -> int:
    """The child's exit code, once it has exited."""
    wait_for(lambda: child.proc.poll() is not None, timeout=timeout, interval=0.2, what="the child to exit")
    return child.proc.returncode


def final_metrics(child: ChildProcess) -> dict[str, Any]:
    """The metrics of the ``ingest stopped`` log line."""
    for line in reversed(child.output().splitlines()):
        if '"ingest stopped"' in line:
            metrics: dict[str, Any] = orjson.loads(line)["metrics"]
            return metrics
    raise AssertionError(f"no final metrics line in:\n{child.output()[-3000:]}")


def latest_metrics(child: ChildProcess) -> dict[str, Any] | None:
    """The metrics of the child's newest ``ingest metrics`` log line (logged every ``--metrics-interval``)."""
    for line in reversed(child.output().splitlines()):
        if '"ingest metrics"' in line:
            metrics: dict[str, Any] = orjson.loads(line)["metrics"]
            return metrics
    return None


def backfilled_ranges(child: ChildProcess) -> dict[str, list[tuple[int, int]]]:
    """The gaps (first, last) per symbol the child's log says its backfill worker filled, fully or in part."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for line in child.output().splitlines():
        if '"gap backfilled"' in line or '"gap only partly backfilled"' in line:
            entry = orjson.loads(line)
            ranges.setdefault(entry["symbol"], []).append((entry["first"], entry["last"]))
    return ranges


def assert_order_kept(messages: list[tuple[bytes | None, bytes]], gaps: dict[str, list[tuple[int, int]]]) -> None:
    """Per symbol, Kafka holds the live trades in id order and each backfilled gap in id order: the backfill runs
    beside the stream, so a gap's trades come after later live ones, but nothing else is out of order."""
    by_symbol: dict[str, list[int]] = {}
    for _key, value in messages:
        record = decode(value)
        by_symbol.setdefault(record.symbol, []).append(record.trade_id)
    for symbol, ids in by_symbol.items():
        spans = gaps.get(symbol, [])

        def in_gap(trade_id: int, spans: list[tuple[int, int]] = spans) -> bool:
            return any(first <= trade_id <= last for first, last in spans)

        live = [i for i in ids if not in_gap(i)]
        assert live == sorted(live), f"{symbol}: live trades out of order"
        for first, last in spans:
            filled = [i for i in ids if first <= i <= last]
            assert filled == sorted(filled), f"{symbol}: gap {first}..{last} out of order"


def read_topic(topic: str, expected: int, timeout: float = 60) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of every message of ``topic``, once at least ``expected`` arrived (then a short drain)."""
    consumer = KafkaConsumer(
        topic,
        **client_config(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    messages: list[tuple[bytes | None, bytes]] = []

    def enough() -> bool:
        for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
            messages.extend((m.key, m.value) for m in batch)
        return len(messages) >= expected

    try:
        wait_for(enough, timeout=timeout, interval=0, what=f"{expected} messages on {topic}")
        # Anything beyond the expected count would be a defect the caller asserts on: read what is there.
        for batch in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            messages.extend((m.key, m.value) for m in batch)
    finally:
        consumer.close()
    return messages


def read_until(
    topic: str, done: Callable[[list[tuple[bytes | None, bytes]]], bool], timeout: float = 120
) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the messages of ``topic`` read from the start until ``done(messages)`` holds."""
    consumer = KafkaConsumer(
        topic, **client_config(), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    messages: list[tuple[bytes | None, bytes]] = []

    def enough() -> bool:
        for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
            messages.extend((m.key, m.value) for m in batch)
        return done(messages)

    try:
        wait_for(enough, timeout=timeout, interval=0, what=f"the expected messages on {topic}")
    finally:
        consumer.close()
    return messages


def read_ids(topic: str, ids: set[int], timeout: float = 120) -> list[tuple[bytes | None, bytes]]:
    """The messages of ``topic`` once every trade id of ``ids`` is among them (repeats allowed: re-sends)."""
    missing = set(ids)
    checked = [0]

    def every_id(messages: list[tuple[bytes | None, bytes]]) -> bool:
        missing.difference_update(decode(value).trade_id for _key, value in messages[checked[0] :])
        checked[0] = len(messages)
        return not missing

    return read_until(topic, every_id, timeout=timeout)
