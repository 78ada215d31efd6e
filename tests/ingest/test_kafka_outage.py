"""A Kafka outage longer than the producer's delivery timeout loses no trade (real broker, killed).

``manage.py ingest`` reads a paced replay from the simulator; this stack's broker is SIGKILLed once trades flow,
stays down three delivery timeouts, and comes back through ``scripts/stack.sh up``. Every trade id of the replay
must end on the topic, and what ingest held meanwhile must stay under its bound (it waits for Kafka instead:
back-pressure). Before the fix, 93% of such a replay was lost.

With the spill journal (the default), ingest goes on reading past its byte bound: the trades go to disk and reach
Kafka once, in order, when it is back; the memory held stays under ``INGEST_BUFFER_BYTES``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.records import decode
from simulator.config import SimulatorConfig
from simulator.server import BackgroundSimulator
from tests.conftest import ChildProcess, KafkaTopics, wait_for
from tests.faults import kafka_down
from tests.ingest.pipeline import final_metrics, read_ids, read_topic, start_ingest, wait_exit
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


def ingest_flowing(spawn: Callable[..., ChildProcess], sim: BackgroundSimulator, **env: str) -> ChildProcess:
    """``manage.py ingest`` reading ``sim`` (with ``env``), once its first trades are acknowledged."""
    ingest = start_ingest(spawn, "binance", 0, "btcusdt", BINANCE_WS_URL=sim.url, BINANCE_REST_URL=sim.http_url, **env)
    wait_for(
        lambda: latest_metrics(ingest).get("trades_published", 0) >= 300 or ingest.proc.poll() is not None,
        timeout=120,
        what="trades to flow",
    )
    assert ingest.proc.poll() is None, ingest.output()[-3000:]
    return ingest


def test_a_kafka_outage_longer_than_the_delivery_timeout_loses_no_trade(
    kafka_topics: KafkaTopics, spawn: Callable[..., ChildProcess]
) -> None:
    replay = records(TRADES)
    config = SimulatorConfig(exchange="binance", speed=0, max_rate=RATE, ping_interval=None)
    with BackgroundSimulator(config, replay) as sim:
        ingest = ingest_flowing(
            spawn,
            sim,
            INGEST_DELIVERY_TIMEOUT_MS=str(DELIVERY_TIMEOUT_MS),
            INGEST_BUFFER_TRADES=str(BUFFER),
            INGEST_SHUTDOWN_TIMEOUT="30",
            INGEST_JOURNAL_BYTES="0",  # no spill journal: a full buffer stops reading (back-pressure)
        )
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


SPILL_TRADES = 8000
SPILL_RATE = 800  # trades per second: the replay lasts 10 s, the outage (plus the broker's restart) most of it
SPILL_BUFFER_BYTES = 100_000  # INGEST_BUFFER_BYTES: ~350 of these trades, reached within a second of the outage


def test_past_the_byte_bound_ingest_spills_to_its_journal_and_kafka_gets_every_trade_once_in_order(
    kafka_topics: KafkaTopics, spawn: Callable[..., ChildProcess], ingest_journal_dir: Path
) -> None:
    replay = records(SPILL_TRADES)
    config = SimulatorConfig(exchange="binance", speed=0, max_rate=SPILL_RATE, ping_interval=None)
    with BackgroundSimulator(config, replay) as sim:
        ingest = ingest_flowing(spawn, sim, INGEST_BUFFER_BYTES=str(SPILL_BUFFER_BYTES), INGEST_SHUTDOWN_TIMEOUT="30")
        with kafka_down():
            # Ingest goes on reading: past the byte bound the trades go to the journal on disk.
            wait_for(
                lambda: latest_metrics(ingest).get("journal_spilled", 0) >= 1000 or ingest.proc.poll() is not None,
                timeout=60,
                what="trades spilled to the journal",
            )
            assert ingest.proc.poll() is None, ingest.output()[-3000:]
            assert list((ingest_journal_dir / "binance-btcusdt").glob("*.seg"))
        published = read_topic(kafka_topics.trades, SPILL_TRADES, timeout=240)
        wait_for(lambda: latest_metrics(ingest).get("journal_bytes") == 0, timeout=60, what="the journal emptied")
        ingest.stop()
        assert wait_exit(ingest, timeout=60) == 0, ingest.output()[-3000:]

    # Every trade exactly once, in the market's order (one symbol: one partition).
    assert [decode(value).trade_id for _key, value in published] == [record.trade_id for record in replay]
    metrics = final_metrics(ingest)
    assert metrics["journal_spilled"] >= 1000
    assert metrics["journal_replayed"] == metrics["journal_spilled"]
    assert 0 < metrics["buffered_bytes_max"] <= SPILL_BUFFER_BYTES  # memory never held more than the bound
    assert metrics["backpressure_waits"] == metrics["journal_full_waits"] == 0  # reading never stopped
    assert (metrics["publish_errors"], metrics["trades_not_delivered"], metrics["buffered_bytes"]) == (0, 0, 0)
    assert not list((ingest_journal_dir / "binance-btcusdt").glob("*.seg"))  # removed once Kafka acknowledged it
    logged = ingest.output()
    assert '"memory bound reached: spilling to the journal"' in logged
    assert '"journal replay done"' in logged
