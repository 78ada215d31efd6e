"""Helpers for the simulator tests: an in-process simulator on an ephemeral port and small blocking clients."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import websocket

from ingest.records import TradeRecord
from simulator.config import SimulatorConfig
from simulator.depth import DepthTape
from simulator.feed import PaceKey, trade_time
from simulator.server import BackgroundSimulator
from tests.conftest import DATA

pytestmark = pytest.mark.unit

BTC_0808 = DATA / "binance-spot-ws" / "btcusdt_20240808.gz"
TRX_CSV = DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv"
COINBASE = DATA / "coinbase-ws" / "COINBASE.jsonl.zst"


@contextmanager
def running(
    source: Iterable[TradeRecord], pace: PaceKey = trade_time, depth: DepthTape | None = None, **config: Any
) -> Iterator[BackgroundSimulator]:
    """A simulator at speed 0 without server pings (unless asked), stopped on exit; ``depth``: recorded book events."""
    settings: dict[str, Any] = {"speed": 0.0, "ping_interval": None, **config}
    with BackgroundSimulator(SimulatorConfig(**settings), source, pace, depth) as sim:
        yield sim


def connect(url: str, timeout: float = 20.0) -> websocket.WebSocket:
    """A websocket-client connection (the client the ingest command uses)."""
    return websocket.create_connection(url, timeout=timeout, skip_utf8_validation=True)


def recv_json(ws: websocket.WebSocket) -> Any:
    """The next text frame, parsed."""
    return orjson.loads(ws.recv())


def http_get(url: str) -> tuple[int, Any]:
    """(status, parsed JSON body) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
