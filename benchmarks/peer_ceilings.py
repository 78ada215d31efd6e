"""The ceilings of ``make bench-peer``'s ingest case: each stage of ``manage.py ingest`` alone, on the same trades.

An ingest process does three things per trade, on the libraries the project is bound to: receive a frame
(websocket-client, through :class:`ingest.client.WsClient`), parse and validate it (the Binance adapter's parser),
and publish it (kafka-python, through :class:`ingest.producer.TradeProducer` with its durability settings). Each
stage is measured here with nothing else running in its process, so their CPU per trade adds up to what no ingest
built on these libraries can go below, and 1e6 / that sum is the rate one process (one GIL) cannot exceed.
``benchmarks/peer.py`` runs each stage in its own process and puts the figures beside the two sides.

    python -m benchmarks.peer_ceilings receive --url ws://127.0.0.1:PORT --trades N
    python -m benchmarks.peer_ceilings parse --frames FILE
    python -m benchmarks.peer_ceilings publish --frames FILE --topic T --dlq D

Each prints one JSON object: ``trades``, ``seconds``, ``trades_per_s``, ``cpu_us_per_trade`` (this process's user
+ system time, every thread, from the first trade to the last one done).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _measure(run: Callable[[Callable[[], None]], int]) -> dict[str, Any]:
    """Run ``run(start)``; ``start()`` opens the window (first trade), ``run`` returns the trades handled."""
    opened: list[tuple[float, float]] = []

    def start() -> None:
        opened.append((time.monotonic(), time.process_time()))

    trades = run(start)
    wall, cpu = time.monotonic(), time.process_time()
    if not opened or not trades:
        raise SystemExit("no trade was handled")
    seconds = max(wall - opened[0][0], 1e-9)
    return {
        "trades": trades,
        "seconds": round(seconds, 3),
        "trades_per_s": round(trades / seconds, 1),
        "cpu_us_per_trade": round((cpu - opened[0][1]) / trades * 1e6, 2),
    }


def frames(path: Path) -> Iterator[bytes]:
    """The frames of a recording (``<recv ns> <frame>`` lines), without their receive times."""
    with path.open("rb") as lines:
        for line in lines:
            yield line.rstrip(b"\n").split(b" ", 1)[1]


def receive(url: str, count: int) -> dict[str, Any]:
    """``count`` data frames read by the ingest's own client (websocket-client, read-ahead), and dropped."""
    from ingest.client import WsClient
    from ingest.exchanges.binance.adapter import BinanceExchange

    plan = BinanceExchange(url).plans(["btcusdt"])[0]
    stop = threading.Event()

    def run(start: Callable[[], None]) -> int:
        seen = 0

        def on_frame(raw: bytes, received_at: int) -> bool:
            nonlocal seen
            if not seen:
                start()
            seen += 1
            if seen >= count:
                stop.set()
            return False

        WsClient(plan, on_frame, stop).run()
        return seen

    return _measure(run)


def parse(path: Path) -> dict[str, Any]:
    """The frames of ``path`` through the Binance adapter's parser (JSON, validation, the trade record)."""
    from ingest.exchanges.binance.adapter import BinanceExchange

    parser = BinanceExchange("ws://unused").parser()
    raw = list(frames(path))
    now = time.time_ns() // 1_000_000

    def run(start: Callable[[], None]) -> int:
        start()
        trades = 0
        for frame in raw:
            trades += len(parser.parse(frame, now).trades)
        return trades

    return _measure(run)


def publish(path: Path, topic: str, dlq: str) -> dict[str, Any]:
    """The parsed trades of ``path`` published one call per trade (as ingest does per frame) by the ingest's
    producer (acks=all, idempotent, zstd, its batch appender), until Kafka has acknowledged every one."""
    from ingest.exchanges.binance.adapter import BinanceExchange
    from ingest.metrics import IngestMetrics
    from ingest.producer import TradeProducer

    parser = BinanceExchange("ws://unused").parser()
    now = time.time_ns() // 1_000_000
    trades = [t for frame in frames(path) for t in parser.parse(frame, now).trades]
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=topic, dlq_topic=dlq)
    producer.prepare()
    producer.publish(trades[:1])  # connections and metadata before the window, as ingest has them
    producer.flush(60)

    def run(start: Callable[[], None]) -> int:
        start()
        for trade in trades[1:]:
            producer.publish([trade])
        if not producer.flush(300):
            raise SystemExit("Kafka did not acknowledge every record within 300 s")
        return len(trades) - 1

    try:
        return _measure(run)
    finally:
        producer.close()


def main(argv: list[str] | None = None) -> int:
    """Run one stage (``receive``, ``parse`` or ``publish``) and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    rx = sub.add_parser("receive")
    rx.add_argument("--url", required=True)
    rx.add_argument("--trades", type=int, required=True)
    px = sub.add_parser("parse")
    px.add_argument("--frames", type=Path, required=True)
    kx = sub.add_parser("publish")
    kx.add_argument("--frames", type=Path, required=True)
    kx.add_argument("--topic", required=True)
    kx.add_argument("--dlq", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")
    import django

    django.setup()
    if args.stage == "receive":
        result = receive(args.url, args.trades)
    elif args.stage == "parse":
        result = parse(args.frames)
    else:
        result = publish(args.frames, args.topic, args.dlq)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
