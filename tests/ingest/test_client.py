"""The reconnecting WebSocket client against the real simulator (in-process) and its pure helpers."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Iterator

import orjson
import pytest

from ingest.client import Backoff, RateLimiter, WsClient
from ingest.exchanges.base import ConnectionPlan
from ingest.exchanges.binance.adapter import BinanceExchange
from ingest.records import TradeRecord
from simulator.config import SimulatorConfig
from simulator.feed import looped
from simulator.replay import read_trades
from simulator.server import BackgroundSimulator
from tests.conftest import wait_for
from tests.ingest.pipeline import BTC_0808

pytestmark = pytest.mark.unit


def test_backoff_is_exponential_with_full_jitter() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 6  # jittered, not fixed steps
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


def test_rate_limiter_sliding_window() -> None:
    now = [100.0]
    limiter = RateLimiter(2, 1.0, clock=lambda: now[0])
    assert limiter.delay() == 0.0
    limiter.record()
    limiter.record()
    assert limiter.delay() == pytest.approx(1.0)
    now[0] += 0.4
    assert limiter.delay() == pytest.approx(0.6)
    now[0] += 0.6
    assert limiter.delay() == 0.0


def records(count: int) -> list[TradeRecord]:
    out: list[TradeRecord] = []
    if not count:
        return out
    for record in read_trades(BTC_0808):
        out.append(record)
        if len(out) == count:
            break
    return out


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[BackgroundSimulator]:
    """A Binance simulator at speed 0 over the first ``trades`` trades of a recording (repeated with ``loop``)."""
    options = getattr(request, "param", {})
    config = SimulatorConfig(
        **{"exchange": "binance", "speed": 0, "ping_interval": None, "ping_timeout": None, **options.get("config", {})}
    )
    trades = records(options.get("trades", 3000))
    source: Iterable[TradeRecord] = looped(lambda: trades) if options.get("loop") else trades
    with BackgroundSimulator(config, source) as sim:
        yield sim


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """The clients' stop event, also set at teardown: a failed test leaves no client reconnecting forever.

    Tests request it after ``simulator``, so it is torn down first: the client stops before the server does.
    """
    event = threading.Event()
    yield event
    event.set()


class Collector:
    """on_frame that keeps frames; optionally asks to recycle after ``recycle_after`` frames."""

    def __init__(self, recycle_after: int = 0) -> None:
        self.frames: list[bytes] = []
        self.recycle_after = recycle_after
        self.reasons: list[str] = []
        self.connects = 0

    def __call__(self, raw: bytes, received_at: int) -> bool:
        assert received_at > 0
        self.frames.append(raw)
        return bool(self.recycle_after) and len(self.frames) % self.recycle_after == 0

    def on_connect(self) -> None:
        self.connects += 1


def run_client(client: WsClient) -> threading.Thread:
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    return thread


def make_client(url: str, collector: Collector, stop: threading.Event, **options: object) -> WsClient:
    (plan,) = BinanceExchange(url).plans(["btcusdt"])
    return WsClient(
        plan,
        collector,
        stop,
        on_connect=collector.on_connect,
        on_disconnect=collector.reasons.append,
        poll_interval=0.1,
        backoff=Backoff(base=0.01, cap=0.05),
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("simulator", [{"config": {"drop_every": 500}, "trades": 9000}], indirect=True)
def test_reconnects_after_server_drops(simulator: BackgroundSimulator, stop: threading.Event) -> None:
    collector = Collector()
    client = make_client(simulator.url, collector, stop)
    thread = run_client(client)
    wait_for(lambda: collector.connects >= 3, timeout=30, what="two reconnects")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert client.connections == collector.connects >= 3
    assert all(reason.startswith(("connection lost", "closed by server")) for reason in collector.reasons)
    ids = [orjson.loads(frame)["data"]["t"] for frame in collector.frames]
    assert ids == sorted(ids)  # the market never rewinds
    assert len(ids) >= 1000


@pytest.mark.parametrize("simulator", [{"config": {"ping_interval": 0.05, "ping_timeout": 0.5}}], indirect=True)
def test_pings_are_answered_so_the_server_keeps_the_connection(
    simulator: BackgroundSimulator, stop: threading.Event
) -> None:
    collector = Collector()
    client = make_client(simulator.url, collector, stop)
    thread = run_client(client)
    # 20 pings span 1 s, twice the server's pong timeout: only answered pings keep the connection open
    wait_for(lambda: client.pings >= 20, timeout=30, what="20 pings")
    stop.set()
    thread.join(10)
    assert client.connections == 1
    assert collector.reasons == []


@pytest.mark.parametrize("simulator", [{"trades": 0}], indirect=True)
def test_a_silent_link_is_recycled(simulator: BackgroundSimulator, stop: threading.Event) -> None:
    collector = Collector()
    client = make_client(simulator.url, collector, stop, idle_timeout=0.3)
    thread = run_client(client)
    wait_for(lambda: "idle timeout" in collector.reasons and collector.connects >= 2, timeout=30)
    stop.set()
    thread.join(10)
    assert collector.frames == []


@pytest.mark.parametrize("simulator", [{"trades": 0, "config": {"ping_interval": 0.05}}], indirect=True)
def test_connections_are_recycled_before_the_exchange_cut_off(
    simulator: BackgroundSimulator, stop: threading.Event
) -> None:
    collector = Collector()
    client = make_client(simulator.url, collector, stop, max_age=0.3)
    thread = run_client(client)
    wait_for(lambda: collector.reasons.count("max age") >= 2, timeout=30)
    stop.set()
    thread.join(10)
    assert client.connections >= 3


# The market must outlast the recycles: at speed 0 the first connection's socket buffers can take a whole
# finite recording before its client has read 100 frames, leaving nothing for the next connections.
@pytest.mark.parametrize("simulator", [{"trades": 9757, "loop": True}], indirect=True)
def test_server_shutdown_notice_reconnects_at_once(simulator: BackgroundSimulator, stop: threading.Event) -> None:
    collector = Collector(recycle_after=100)
    client = make_client(simulator.url, collector, stop)
    thread = run_client(client)
    wait_for(lambda: collector.connects >= 3, timeout=30)
    stop.set()
    thread.join(10)
    assert collector.reasons[:2] == ["server shutdown", "server shutdown"]


def test_subscribe_messages_are_sent_after_connecting(simulator: BackgroundSimulator, stop: threading.Event) -> None:
    collector = Collector()
    plan = ConnectionPlan(
        url=f"{simulator.url}/ws",
        symbols=("btcusdt",),
        subscribe=(
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}',
            '{"method":"LIST_SUBSCRIPTIONS","id":2}',
        ),
    )
    client = WsClient(plan, collector, stop, poll_interval=0.1)
    thread = run_client(client)

    def replies() -> list[object]:
        return [orjson.loads(f) for f in list(collector.frames) if b'"id"' in f]

    wait_for(lambda: len(replies()) >= 2, timeout=30)
    stop.set()
    thread.join(10)
    answers = replies()
    assert {"result": None, "id": 1} in answers
    assert {"result": ["btcusdt@trade"], "id": 2} in answers
    assert any(orjson.loads(f).get("e") == "trade" for f in collector.frames)


def test_unreachable_server_backs_off_until_stopped(stop: threading.Event) -> None:
    collector = Collector()
    client = make_client("ws://127.0.0.1:9", collector, stop)
    thread = run_client(client)
    wait_for(lambda: client.backoff.attempt >= 3, timeout=30)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert client.connections == 0


def test_a_keepalive_plan_pings_a_quiet_link_and_keeps_it() -> None:
    # OKX closes a connection quiet for 30 s unless the client sends the text "ping" (answered "pong"): a plan's
    # keepalive is sent after keepalive_s without a frame, so a quiet link is kept, not recycled as idle.
    config = SimulatorConfig(exchange="okx", speed=0, ping_interval=None, ping_timeout=None, symbols=("BTC-USDT",))
    stop = threading.Event()
    with BackgroundSimulator(config, iter(())) as sim:
        plan = ConnectionPlan(url=f"{sim.url}/ws/v5/public", symbols=("BTC-USDT",), keepalive="ping", keepalive_s=0.1)
        collector = Collector()
        client = WsClient(
            plan, collector, stop, on_disconnect=collector.reasons.append, poll_interval=0.05, idle_timeout=0.5
        )
        thread = run_client(client)
        try:
            wait_for(lambda: collector.frames.count(b"pong") >= 10, timeout=30, what="10 pongs")
        finally:
            stop.set()
            thread.join(10)
    assert (client.connections, collector.reasons) == (1, [])


def test_messages_a_frame_handler_returns_are_sent_on_its_connection(
    simulator: BackgroundSimulator, stop: threading.Event
) -> None:
    """A books feed resyncs by re-subscribing: the messages its handler returns go out on the same connection."""
    frames: list[bytes] = []

    def handler(raw: bytes, _received_at: int) -> bool | list[str]:
        frames.append(raw)
        if len(frames) == 1:  # the first trade: ask the server for its subscriptions, on this connection
            return ['{"method":"LIST_SUBSCRIPTIONS","id":9}']
        return []

    plan = ConnectionPlan(url=f"{simulator.url}/ws/btcusdt@trade", symbols=("btcusdt",))
    client = WsClient(plan, handler, stop, poll_interval=0.1)
    thread = run_client(client)
    wait_for(lambda: any(b'"id":9' in f for f in list(frames)), timeout=30)
    stop.set()
    thread.join(10)
    assert {"result": ["btcusdt@trade"], "id": 9} in [orjson.loads(f) for f in frames if b'"id"' in f]
    assert client.connections == 1  # sent, not reconnected
