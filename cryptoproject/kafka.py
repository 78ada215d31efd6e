"""Kafka settings shared by every process: client options, topic names, readiness and topic creation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cryptoproject.connection_problems import kafka_sasl_problem, kafka_tls_problem


class BrokerUnavailableError(RuntimeError):
    """The Kafka bootstrap servers did not answer in time; the message names the address."""


class KafkaMisconfiguredError(BrokerUnavailableError):
    """The broker answers but refuses the connection's TLS or SASL settings; the message names the setting.

    Retrying cannot help, so :func:`wait_for_broker` raises it at once rather than at its timeout.
    """


def bootstrap_servers() -> list[str]:
    """The configured ``KAFKA_BOOTSTRAP_SERVERS``."""
    return list(settings.KAFKA_BOOTSTRAP_SERVERS)


def client_config() -> dict[str, Any]:
    """Connection options common to producers, consumers and admin clients (PLAINTEXT, SSL or SASL)."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(),
        "security_protocol": settings.KAFKA_SECURITY_PROTOCOL,
    }
    if settings.KAFKA_SECURITY_PROTOCOL.startswith("SASL"):
        config.update(
            sasl_mechanism=settings.KAFKA_SASL_MECHANISM or "PLAIN",
            sasl_plain_username=settings.KAFKA_SASL_USERNAME,
            sasl_plain_password=settings.KAFKA_SASL_PASSWORD,
        )
    if settings.KAFKA_SSL_CAFILE:
        config["ssl_cafile"] = settings.KAFKA_SSL_CAFILE
    return config


def tls_misconfiguration() -> str | None:
    """With ``SSL``/``SASL_SSL``, the setting the first bootstrap server's certificate check fails on
    (``KAFKA_SSL_CAFILE``, ``KAFKA_BOOTSTRAP_SERVERS``' host name, ...); None when it verifies or does not answer."""
    if not settings.KAFKA_SECURITY_PROTOCOL.endswith("SSL"):
        return None
    servers = bootstrap_servers()
    return kafka_tls_problem(servers[0], settings.KAFKA_SSL_CAFILE) if servers else None


def misconfiguration() -> str | None:
    """The Kafka setting the first bootstrap server refuses: its certificate check (:func:`tls_misconfiguration`),
    then, with SASL, one login (``KAFKA_SASL_PASSWORD``, ``KAFKA_SASL_MECHANISM``); None when all is accepted or
    the broker does not answer (an outage)."""
    problem = tls_misconfiguration()
    servers = bootstrap_servers()
    if problem or not servers or not settings.KAFKA_SECURITY_PROTOCOL.startswith("SASL"):
        return problem
    return kafka_sasl_problem(
        servers[0],
        tls=settings.KAFKA_SECURITY_PROTOCOL == "SASL_SSL",
        cafile=settings.KAFKA_SSL_CAFILE,
        mechanism=settings.KAFKA_SASL_MECHANISM or "PLAIN",
        username=settings.KAFKA_SASL_USERNAME,
        password=settings.KAFKA_SASL_PASSWORD,
    )


def admin_client(timeout: float = 10.0) -> KafkaAdminClient:
    """An admin client that fails within ``timeout`` seconds with the address named, or with the setting named
    (:class:`KafkaMisconfiguredError`) when the broker refuses the client's TLS or SASL settings."""
    try:
        return KafkaAdminClient(
            **client_config(),
            bootstrap_timeout_ms=int(timeout * 1000),
            request_timeout_ms=int(timeout * 1000),
        )
    except (KafkaError, OSError) as exc:
        problem = misconfiguration()
        if problem:
            raise KafkaMisconfiguredError(problem) from exc
        raise BrokerUnavailableError(_unreachable(timeout, exc)) from exc


def wait_for_broker(timeout: float = 10.0) -> None:
    """Block until the cluster answers a metadata request, or raise :class:`BrokerUnavailableError`
    (:class:`KafkaMisconfiguredError` at once when the broker refuses the client's TLS or SASL settings)."""
    # One handshake and one login first: a wrong CA, host name or password is known before any retry (kafka-python
    # would retry a refused login until its timeout, and say only that it could not bootstrap).
    problem = misconfiguration()
    if problem:
        raise KafkaMisconfiguredError(problem)
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        remaining = max(0.5, deadline - time.monotonic())
        try:
            admin = admin_client(timeout=min(remaining, 5.0))
            try:
                if admin.describe_cluster().get("brokers"):
                    return
            finally:
                admin.close()
        except KafkaMisconfiguredError:
            raise
        except BrokerUnavailableError as exc:
            last = exc.__cause__ or exc
        except (KafkaError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise BrokerUnavailableError(_unreachable(timeout, last))


def _unreachable(timeout: float, exc: object) -> str:
    servers = ",".join(bootstrap_servers())
    return f"Kafka is unreachable at KAFKA_BOOTSTRAP_SERVERS={servers} (no answer within {timeout:.0f} s: {exc})"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project needs, with its partition count and configs."""

    name: str
    partitions: int
    config: dict[str, str]


def project_topics() -> list[TopicSpec]:
    """``market.trades`` (keyed by exchange:symbol, several partitions), its dead-letter topic and ``market.books``
    (book deltas and snapshots, keyed like trades)."""
    return [
        TopicSpec(settings.KAFKA_TRADES_TOPIC, settings.KAFKA_TRADES_PARTITIONS, {"compression.type": "producer"}),
        TopicSpec(settings.KAFKA_BOOKS_TOPIC, settings.KAFKA_TRADES_PARTITIONS, {"compression.type": "producer"}),
        TopicSpec(settings.KAFKA_DLQ_TOPIC, 1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    ]


def ensure_topics(
    topics: list[TopicSpec] | None = None, replication: int | None = None, timeout: float = 10.0
) -> list[str]:
    """Create missing topics (``replication`` replicas, default ``KAFKA_REPLICATION_FACTOR``); existing ones are left
    as they are. Returns the names created."""
    specs = topics if topics is not None else project_topics()
    if replication is None:
        replication = settings.KAFKA_REPLICATION_FACTOR
    admin = admin_client(timeout)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication, topic_configs=spec.config)],
                    timeout_ms=int(timeout * 1000),
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        return created
    finally:
        admin.close()
