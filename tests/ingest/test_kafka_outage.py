"""A Kafka outage longer than the producer's delivery timeout loses no trade (real broker, killed).

``manage.py ingest`` reads a paced replay from the simulator; this stack's broker is SIGKILLed once trades flow,
stays down three delivery timeouts, and comes back through ``scripts/stack.sh up``. Every trade id of the replay
must end on the topic, and what ingest held meanwhile must stay under its bound (it waits for Kafka instead:
back-pressure). Before the fix, 93% of such a replay was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from ingest.records import decode
from simulator.config import SimulatorConfig
from simulator.server import BackgroundSimulator
from tests.conftest import ChildProcess, KafkaTopics, wait_for
from tests.faults import kafka_down
from tests.ingest.pipeline import final_metrics, read_ids, start_ingest, wait_exit
from tests.ingest.test_client import records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRADES = 6000
RATE = 200  # trades per second from the simulator: the replay lasts 30 s
BUFFER = 1500  # INGEST_BUFFER_TRADES: a 15 s outage at 200/s (3,000 trades) overflows it
DELIVERY_TIMEOUT_MS = 5000


def latest_metrics(child: ChildProcess) -> dict[str, Any]:
    """The most recent ``ingest metrics`` log line of the child (empty before the first)."""
    for line in reversed(child.output().splitlines()):
        if '"ingest metrics"' in line:
            metrics: dict[str, Any] = orjson.loads(line)["metrics"]
            return metrics
    return {}


def test_a_kafka_outage_longer_than_the_delivery_timeout_loses_no_trade(
    kafka_topics: KafkaTopics, spawn: Callable[..., ChildProcess]
) -> None:
    replay = records(TRADES)
    config = SimulatorConfig(exchange="binance", speed=0, max_rate=RATE, ping_interval=None)
    with BackgroundSimulator(config, replay) as sim:
        ingest = start_ingest(
            spawn,
            "binance",
            0,
            "btcusdt",
            BINANCE_WS_URL=sim.url,
            BINANCE_REST_URL=sim.http_url,
            INGEST_DELIVERY_TIMEOUT_MS=str(DELIVERY_TIMEOUT_MS),
            INGEST_BUFFER_TRADES=str(BUFFER),
            INGEST_SHUTDOWN_TIMEOUT="30",
        )
        wait_for(
            lambda: latest_metrics(ingest).get("trades_published", 0) >= 300 or ingest.proc.poll() is not None,
            timeout=120,
            what="trades to flow",
        )
        assert ingest.proc.poll() is None, ingest.output()[-3000:]
        with kafka_down():
            # Three delivery timeouts: batches expire while the broker is away and must be kept, not dropped.
            time.sleep(3 * DELIVERY_TIMEOUT_MS / 1000)  # the outage itself, not a wait for the pipeline
            assert ingest.proc.poll() is None, ingest.output()[-3000:]
        expected = {record.trade_id for record in replay}
        # Re-sent records may repeat, so a count is not enough: wait for every id.
        published = read_ids(kafka_topics.trades, expected, timeout=240)
        ingest.stop()
        assert wait_exit(ingest, timeout=60) == 0, ingest.output()[-3000:]

    ids = [decode(value).trade_id for _key, value in published]
    assert set(ids) == expected  # nothing lost (re-sent records may repeat: consumers de-duplicate)
    metrics = final_metrics(ingest)
    assert metrics["trades_resent"] > 0  # the outage really expired batches, and they were re-sent
    assert metrics["producer_restarts"] >= 1
    assert metrics["publish_errors"] == 0
    assert metrics["trades_not_delivered"] == 0
    assert metrics["backpressure_waits"] >= 1  # the buffer filled up: ingest waited instead of growing
    assert 0 < metrics["buffered_max"] <= BUFFER
    assert metrics["buffered"] == 0
