"""cryptofeed's side of ``make bench-peer``: its Binance feed, pointed at the simulator, into Kafka or PostgreSQL.

Runs in its own virtualenv (``.venv-peer``, from ``requirements/peer.txt``) and imports nothing of the project.
The changes to cryptofeed are where its Binance feed connects (the class attributes ``websocket_endpoints`` and
``rest_endpoints``, ``exchangeInfo`` for the symbol map, overridden in a subclass), letting its connection accept the
simulator's plain ``ws://`` address, and setting an event loop before ``run()`` (see below); parsing, the backends,
their queues and their writes are cryptofeed's own. The Kafka producer gets the project's durability: ``acks=all`` with
idempotence. ``benchmarks/peer.py`` starts this script, measures it from outside (CPU, RSS, what reached the topic
or the table) and stops it.

    .venv-peer/bin/python benchmarks/peer_cryptofeed.py --ws ws://127.0.0.1:PORT --rest http://127.0.0.1:PORT \
        kafka --bootstrap 127.0.0.1:9092 --key bench-xyz
    .venv-peer/bin/python benchmarks/peer_cryptofeed.py --ws ... --rest ... postgres --dsn-json '{...}' --table t
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from cryptofeed import FeedHandler
from cryptofeed.backends.kafka import TradeKafka
from cryptofeed.backends.postgres import TradePostgres
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import TRADES
from cryptofeed.exchanges import Binance


def allow_plain_websocket() -> None:
    """cryptofeed refuses any address but ``wss://`` when a connection object is built; the simulator speaks
    plain ``ws://`` (so neither side pays for TLS). The check is passed with the ``wss`` spelling and the real
    address put back before anything connects; reading and parsing are untouched."""
    original = WSAsyncConn.__init__

    def init(self: WSAsyncConn, address: str, *args: object, **kwargs: object) -> None:
        plain = address.startswith("ws://")
        original(self, "wss://" + address[len("ws://") :] if plain else address, *args, **kwargs)
        self.address = address

    WSAsyncConn.__init__ = init


def simulated_binance(ws_url: str, rest_url: str) -> type[Binance]:
    """cryptofeed's Binance feed with its endpoints moved to the simulator (nothing else changed)."""

    class SimulatedBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(ws_url)]
        rest_endpoints = [
            RestEndpoint(
                rest_url,
                routes=Routes(
                    "/api/v3/exchangeInfo",
                    l2book="/api/v3/depth?symbol={}&limit={}",
                    authentication="/api/v3/userDataStream",
                ),
            )
        ]

    return SimulatedBinance


def main() -> None:
    """Run cryptofeed's Binance feed against the simulator into Kafka or PostgreSQL until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws", required=True)
    parser.add_argument("--rest", required=True)
    parser.add_argument("--symbol", default="BTC-USDT", help="cryptofeed's normalised symbol")
    sub = parser.add_subparsers(dest="backend", required=True)
    kafka = sub.add_parser("kafka")
    kafka.add_argument("--bootstrap", required=True)
    kafka.add_argument("--key", required=True, help="topic prefix: the topic is <key>-BINANCE-<symbol>")
    postgres = sub.add_parser("postgres")
    postgres.add_argument("--dsn-json", required=True, help='{"host":..,"port":..,"user":..,"pw":..,"db":..}')
    postgres.add_argument("--table", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.backend == "kafka":
        host, _, port = args.bootstrap.partition(":")
        backend = TradeKafka(
            key=args.key,
            bootstrap_servers=f"{host}:{port}",
            acks="all",
            enable_idempotence=True,
            client_id="cryptofeed-bench",
        )
    else:
        backend = TradePostgres(table=args.table, **json.loads(args.dsn_json))
    feed = simulated_binance(args.ws, args.rest)(symbols=[args.symbol], channels=[TRADES], callbacks={TRADES: backend})
    allow_plain_websocket()
    handler = FeedHandler()
    # FeedHandler() installs uvloop's policy and run() then calls asyncio.get_event_loop(), which uvloop >= 0.22
    # refuses when no loop is set (as asyncio does from Python 3.14): the main thread gets its loop here.
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.add_feed(feed)
    print("cryptofeed starting", flush=True)
    handler.run()


if __name__ == "__main__":
    main()
