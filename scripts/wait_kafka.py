"""Wait until a Kafka broker answers a metadata request, or fail with the address named.

Usage: wait_kafka.py HOST:PORT [--timeout SECONDS]

A TLS stack's broker (``scripts/stack_env.sh N --tls``) is reached with the application's variables from the
environment: ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_MECHANISM``, ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``
and ``KAFKA_SSL_CAFILE`` (``scripts/stack.sh`` sets them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def security_options() -> dict[str, Any]:
    """kafka-python's security options from the environment (none for PLAINTEXT)."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "") or "PLAINTEXT"
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=os.environ.get("KAFKA_SASL_MECHANISM") or "PLAIN",
            sasl_plain_username=os.environ.get("KAFKA_SASL_USERNAME", ""),
            sasl_plain_password=os.environ.get("KAFKA_SASL_PASSWORD", ""),
        )
    if os.environ.get("KAFKA_SSL_CAFILE"):
        options["ssl_cafile"] = os.environ["KAFKA_SSL_CAFILE"]
    return options


def main() -> int:
    """Poll until ``--brokers`` brokers are registered; 0 then, 1 with the address and last error on timeout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=60.0)
    # A cluster is ready for topics of N replicas only once N brokers are registered, not when one answers.
    parser.add_argument("--brokers", type=int, default=1, help="wait until this many brokers are registered")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=args.bootstrap,
                **security_options(),
                bootstrap_timeout_ms=2000,
                request_timeout_ms=3000,
            )
            try:
                brokers = admin.describe_cluster().get("brokers") or []
            finally:
                admin.close()
            if len(brokers) >= args.brokers:
                return 0
            last = RuntimeError(f"{len(brokers)} of {args.brokers} brokers registered")
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    print(
        f"Kafka at {args.bootstrap} did not answer a metadata request with {args.brokers} broker(s) within "
        f"{args.timeout:.0f} s ({last})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
