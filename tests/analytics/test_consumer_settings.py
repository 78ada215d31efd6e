"""The consumer's settings: refused at start when out of range (named), and what the worker is built from."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings as django_settings

from analytics.consumer import ConsumerConfig
from analytics.consumer.backstop import Backstop
from analytics.consumer.dead_letters import dlq_producer
from tests.conftest import manage
from tests.foundation.test_settings import run


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRADE_MAX_CLOCK_SKEW_MS": "-1"}, "TRADE_MAX_CLOCK_SKEW_MS: must be between 0 and 86400000"),
        ({"TRADE_MAX_CLOCK_SKEW_MS": "soon"}, "TRADE_MAX_CLOCK_SKEW_MS"),
        ({"DLQ_RAW_MAX_BYTES": "1048576"}, "DLQ_RAW_MAX_BYTES: must be between 256 and 131072"),
        ({"CONSUMER_STALL_TIMEOUT_S": "0"}, "CONSUMER_STALL_TIMEOUT_S"),
        ({"CONSUMER_STATEMENT_TIMEOUT_MS": "60000"}, "CONSUMER_STATEMENT_TIMEOUT_MS"),
        ({"CONSUMER_MAX_INVALID_RATIO": "2"}, "CONSUMER_MAX_INVALID_RATIO"),
        ({"CELERY_BROKER_SOCKET_TIMEOUT": "0"}, "CELERY_BROKER_SOCKET_TIMEOUT"),
    ],
)
def test_out_of_range_consumer_settings_stop_with_their_name(env: dict[str, str], named: str) -> None:
    result = run(manage("check"), **env)
    assert result.returncode != 0
    assert named in result.stderr


def test_config_from_settings_and_bounded_blocking_calls(settings: Any) -> None:
    settings.CONSUMER_MAX_INVALID_RATIO = 0.25
    settings.CONSUMER_INVALID_WINDOW = 50
    settings.CONSUMER_MAX_CONSECUTIVE_INVALID = 7
    settings.DLQ_RAW_MAX_BYTES = 4096
    settings.CONSUMER_STALL_TIMEOUT_S = 33.0
    settings.CONSUMER_STATEMENT_TIMEOUT_MS = 900
    config = ConsumerConfig.from_settings(batch_size=10)
    assert config.batch_size == 10
    assert (config.dlq_limit.max_invalid_ratio, config.dlq_limit.window, config.dlq_limit.min_records) == (0.25, 50, 50)
    assert config.dlq_limit.max_consecutive == 7
    assert (config.dlq_raw_max_bytes, config.stall_timeout_s, config.statement_timeout_ms) == (4096, 33.0, 900)
    # Every wait of the loop stays below the 30 s poll interval.
    assert config.dlq_max_block_ms < config.max_poll_interval_ms
    assert config.dlq_flush_timeout_s * 1000 < config.max_poll_interval_ms
    assert config.statement_timeout_ms is not None
    assert config.statement_timeout_ms < config.max_poll_interval_ms
    options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert 0 < options["socket_timeout"] * 1000 < config.max_poll_interval_ms
    assert 0 < options["socket_connect_timeout"] * 1000 < config.max_poll_interval_ms
    with pytest.raises(ValueError, match="dlq_max_block_ms"):
        ConsumerConfig(dlq_max_block_ms=30_000)
    with pytest.raises(ValueError, match="stall_timeout_s"):
        ConsumerConfig(stall_timeout_s=0)


@pytest.mark.integration
def test_the_dlq_producer_waits_at_most_max_block_ms_and_is_not_idempotent(kafka_topics) -> None:
    producer = dlq_producer(ConsumerConfig(dlq_max_block_ms=1234))
    try:
        assert producer.config["max_block_ms"] == 1234
        assert producer.config["enable_idempotence"] is False
        assert producer.config["acks"] == -1  # "all"
    finally:
        producer.close()


def test_the_backstop_ends_a_process_whose_loop_is_stuck() -> None:
    # In-process runs (tests, benchmarks) never end the process; the command asks for it.
    assert Backstop.for_loop(hard_exit_on_hang=False, stall_timeout_s=0.5, max_poll_interval_ms=1000) is None
    assert Backstop.for_loop(hard_exit_on_hang=True, stall_timeout_s=None, max_poll_interval_ms=1000) is None
    built = Backstop.for_loop(hard_exit_on_hang=True, stall_timeout_s=0.5, max_poll_interval_ms=1000)
    assert built is not None
    assert built.limit_s == 1.5
    exited: list[int] = []
    done = threading.Event()
    now = [100.0]

    def exit_(code: int) -> None:
        exited.append(code)
        done.set()

    backstop = Backstop(1.5, exit=exit_, clock=lambda: now[0], check_s=0.01)
    backstop.start()
    try:
        backstop.tick()
        now[0] += 1.5  # at the limit: not yet
        assert not done.wait(0.1)
        now[0] += 10  # a loop turn that started 11.5 s ago and never came back
        assert done.wait(10)
    finally:
        backstop.stop()
    assert exited[0] == 70
