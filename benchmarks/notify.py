"""``make bench-notify``: the outbox sender's in-app throughput against one delivery at a time, in the same run.

An alert storm makes one in-app delivery per firing. Both sides claim the same way (:func:`notifications.sender.claim`,
``NOTIFY_BATCH_SIZE`` rows a claim) on their own fresh deliveries, in alternating rounds:

- ``batched``: :func:`notifications.sender.run`, which stores a claimed batch's notifications in one statement,
  records them sent in one, and pushes their toasts in one event-loop round trip;
- ``one by one``: the sender before that change, written out here: per row, ``in_app.send`` (a savepointed
  ``get_or_create`` and an ``async_to_sync`` push) and ``sender.record``.

Each round checks that every delivery is ``sent`` and listed once. Runs on its own database (``<name>_bench_notify``)
and Redis database; the machine is shared, so the ratio is the figure to read. Results: ``bench-results/notify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.harness import ROOT
from benchmarks.pipeline import bench_environment

SIDES = ("batched", "one by one")


@dataclass
class Result:
    """The figures of one run: deliveries per second of each side, per round."""

    deliveries_per_round: int
    batch_size: int
    per_s: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    ratio: float = 0.0
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _one_by_one() -> int:
    """Claim and send every due delivery a row at a time (the sender's in-app path before batching)."""
    from django.conf import settings

    from notifications import sender
    from notifications.channels import in_app
    from notifications.channels.base import Deadline

    sent = 0
    while True:
        claimed = sender.claim()
        if not claimed.rows:
            return sent
        for row in claimed.rows:
            in_app.send(row, Deadline.after(settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS))
            sender.record(row, None, "")
            sent += 1


def _round(side: str, count: int, number: int) -> float:
    """Enqueue ``count`` in-app deliveries, send them all with ``side``; deliveries per second."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from notifications.models import ChannelKind, Delivery, DeliveryStatus, Destination, Notification
    from notifications.outbox import Message, Outgoing, enqueue
    from notifications.sender import run

    owner, _ = get_user_model().objects.get_or_create(username=f"bench-notify-{number}")
    target = Destination.objects.create(owner=owner, kind=ChannelKind.IN_APP)
    with transaction.atomic():
        enqueue(
            Outgoing(
                owner_id=owner.pk,
                channels=[ChannelKind.IN_APP],
                message=Message(f"bench:{number}:{i}", f"BTCUSDT crossed {i}", "price on binance", {"n": i}),
                destination_ids=[target.pk],
            )
            for i in range(count)
        )
    started = time.perf_counter()
    if side == "batched":
        run(seconds=3600)
    else:
        _one_by_one()
    elapsed = time.perf_counter() - started
    sent = Delivery.objects.filter(destination=target, status=DeliveryStatus.SENT).count()
    listed = Notification.objects.filter(owner=owner).count()
    if (sent, listed) != (count, count):
        raise SystemExit(f"round {number} ({side}): {sent} sent and {listed} listed of {count}")
    return count / elapsed


def run_rounds(rounds: int, count: int) -> Result:
    """Alternate the sides (the order rotating) for ``rounds`` rounds each."""
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    result = Result(count, settings.NOTIFY_BATCH_SIZE)
    number = int(time.time())
    for r in range(rounds):
        for side in SIDES if r % 2 == 0 else tuple(reversed(SIDES)):
            number += 1
            result.per_s[side].append(round(_round(side, count, number), 1))
    means = {s: sum(v) / len(v) for s, v in result.per_s.items()}
    result.ratio = round(means["batched"] / means["one by one"], 2)
    result.load_avg = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run, write ``--output`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    parser.add_argument("--deliveries", type=int, default=3000, help="in-app deliveries per round")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "notify.json")
    opts = parser.parse_args(argv)
    bench_environment("_bench_notify", opts.redis_db)
    import django

    django.setup()
    result = run_rounds(opts.rounds, opts.deliveries)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(asdict(result), indent=2))
    print(f"outbox sender, in-app, {opts.deliveries:,} deliveries a round, claims of {result.batch_size}")
    print(f"{'side':<14}{'deliveries/s per round':>40}")
    for side in SIDES:
        print(f"{side:<14}{', '.join(f'{v:,.0f}' for v in result.per_s[side]):>40}")
    print(f"batched / one by one: {result.ratio:.2f}x; load average {result.load_avg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
