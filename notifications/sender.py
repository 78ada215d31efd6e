"""The outbox sender: claim due deliveries, commit the attempt, send outside any transaction, record the outcome.

1. :func:`claim` (one transaction): ``SELECT ... FOR UPDATE SKIP LOCKED`` the due rows (``pending`` whose
   ``next_attempt_at`` has come, or ``sending`` whose lease expired: their sender died). Rows whose target's circuit
   breaker is open are deferred (neither attempted nor counted); the others become ``sending`` with ``attempts + 1``
   and a lease, and the transaction COMMITS before anything is sent. A timeout, an exception or a SIGKILL after that
   cannot roll the attempt back, so every failure counts and a delivery cannot be retried forever.
2. :func:`send_batch` sends each claimed row on a thread pool, each attempt under a total deadline
   (``NOTIFY_ATTEMPT_DEADLINE_SECONDS``: connect, send and read together), so the lease always outlives the batch.
3. Each outcome is written as soon as it is known: ``sent``; or ``pending`` again after an exponential backoff with
   jitter (or the receiver's ``Retry-After``); or ``dead`` after ``NOTIFY_MAX_ATTEMPTS`` attempts or a permanent
   error, with ``last_error`` shown to the owner (and an in-app notification).

The crash window: a receiver that accepted a message just before the sender died (or before its ``sent`` write
reached PostgreSQL) gets it again when the lease expires and another sender claims the row. Both attempts carry the
same idempotency key (``Delivery.key``), by which the receiver drops the second.

Outcomes are written one row at a time, right after each send (not batched at the end): batching them would widen
that crash window to the whole batch. The database channels (in-app) are the exception: they write the message
themselves, keyed, so a repeat lists nothing twice, and a claimed batch of them is stored and recorded together.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications.channels import channel_for
from notifications.channels.base import Deadline, DeliveryError, PermanentError, TransientError
from notifications.channels.in_app import notify
from notifications.models import ChannelKind, CircuitBreaker, Delivery, DeliveryStatus

logger = logging.getLogger(__name__)


def lease_seconds() -> float:
    """How long a claim holds its rows: every round of the thread pool at its deadline, plus one, plus slack."""
    rounds = math.ceil(settings.NOTIFY_BATCH_SIZE / settings.NOTIFY_SEND_THREADS)
    return (rounds + 1) * settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS + 5.0


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt ``attempts + 1``: base x 2^(attempts-1), capped, half of it random (equal jitter)."""
    ceiling = min(settings.NOTIFY_BACKOFF_MAX_SECONDS, settings.NOTIFY_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def target_of(delivery: Delivery) -> str:
    """The circuit breaker's key for this delivery ("" for none)."""
    return str(channel_for(delivery.kind).target(delivery))


@dataclass
class Claimed:
    """What one claim took: the rows to send now, and how many were deferred or declared dead."""

    rows: list[Delivery]
    deferred: int = 0
    dead: int = 0


def claim(limit: int | None = None, now: datetime | None = None) -> Claimed:
    """Claim up to ``limit`` due deliveries and commit their attempt (see the module's docstring)."""
    limit = limit or settings.NOTIFY_BATCH_SIZE
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds())
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("destination")
            .filter(
                Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
                | Q(status=DeliveryStatus.SENDING, lease_until__lt=now)
            )
            .order_by("next_attempt_at", "pk")[:limit]
        )
        # A lease that expired on the last allowed attempt: its sender died mid-send. No attempt is left.
        exhausted = [d for d in due if d.attempts >= settings.NOTIFY_MAX_ATTEMPTS]
        for row in exhausted:
            row.status = DeliveryStatus.DEAD
            row.lease_until = None
            row.last_error = row.last_error or "failed: the last attempt was interrupted"
        Delivery.objects.bulk_update(exhausted, ["status", "lease_until", "last_error"])
        # A destination turned off after the firing: not sent, and said so (no attempt is spent on it).
        switched_off = [d for d in due if not d.destination.active and d not in exhausted]
        for row in switched_off:
            row.status = DeliveryStatus.DEAD
            row.lease_until = None
            row.last_error = "not sent: the destination was turned off"
        Delivery.objects.bulk_update(switched_off, ["status", "lease_until", "last_error"])
        candidates = [d for d in due if d.attempts < settings.NOTIFY_MAX_ATTEMPTS and d.destination.active]
        send, deferred = _apply_breakers(candidates, now, lease_until)
        Delivery.objects.bulk_update(deferred, ["status", "lease_until", "next_attempt_at"])
        Delivery.objects.filter(pk__in=[d.pk for d in send]).update(
            status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, lease_until=lease_until
        )
    for row in send:
        row.status = DeliveryStatus.SENDING
        row.attempts += 1
        row.lease_until = lease_until
    for row in exhausted:
        _tell_owner(row)
    return Claimed(send, len(deferred), len(exhausted) + len(switched_off))


def _apply_breakers(
    rows: list[Delivery], now: datetime, lease_until: datetime
) -> tuple[list[Delivery], list[Delivery]]:
    """Split ``rows`` into those to send and those deferred by an open (or probing) breaker; the deferred get
    their new ``next_attempt_at``. Breakers are locked, so two claims never send two half-open probes."""
    targets = {row.pk: target_of(row) for row in rows}
    breakers = {
        b.target: b
        for b in CircuitBreaker.objects.select_for_update().filter(target__in={t for t in targets.values() if t})
    }
    send: list[Delivery] = []
    deferred: list[Delivery] = []
    probing: list[CircuitBreaker] = []
    for row in rows:
        breaker = breakers.get(targets[row.pk])
        if breaker is None or breaker.open_until is None:
            send.append(row)
        elif breaker.open_until > now:
            deferred.append(_defer(row, breaker.open_until))
        elif breaker.probe_until is not None and breaker.probe_until > now:
            deferred.append(_defer(row, breaker.probe_until))
        else:  # half-open: this row is the probe; the target's other rows wait for its outcome
            breaker.probe_until = lease_until
            probing.append(breaker)
            send.append(row)
    CircuitBreaker.objects.bulk_update(probing, ["probe_until"])
    return send, deferred


def _defer(row: Delivery, until: datetime) -> Delivery:
    """Put ``row`` back to ``pending`` until ``until``, its attempts untouched (a lease that expired too)."""
    row.status = DeliveryStatus.PENDING
    row.lease_until = None
    row.next_attempt_at = until
    return row


def _breaker_result(target: str, ok: bool) -> None:
    """Record one outcome against ``target``'s breaker: success closes it, a transient failure counts."""
    if not target:
        return
    if ok:
        CircuitBreaker.objects.filter(target=target).filter(Q(failures__gt=0) | Q(open_until__isnull=False)).update(
            failures=0, open_until=None, probe_until=None
        )
        return
    now = timezone.now()
    with transaction.atomic():
        breaker, _ = CircuitBreaker.objects.select_for_update().get_or_create(target=target)
        breaker.failures += 1
        if breaker.open_until is not None or breaker.failures >= settings.NOTIFY_BREAKER_FAILURES:
            # Opened by K failures in a row, or re-opened by a failed half-open probe.
            breaker.open_until = now + timedelta(seconds=settings.NOTIFY_BREAKER_COOLDOWN_SECONDS)
            breaker.probe_until = None
            logger.warning("circuit breaker open", extra={"target": target, "failures": breaker.failures})
        breaker.save(update_fields=["failures", "open_until", "probe_until", "updated_at"])


def record(delivery: Delivery, error: DeliveryError | None, target: str = "") -> str:
    """Write one attempt's outcome; returns the delivery's new status."""
    now = timezone.now()
    mine = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts)
    if error is None:
        # Sent is true whoever holds the row now (a sender that reclaimed it after our lease expired).
        Delivery.objects.filter(pk=delivery.pk).exclude(status=DeliveryStatus.SENT).update(
            status=DeliveryStatus.SENT, sent_at=now, lease_until=None, last_error=""
        )
        _breaker_result(target, ok=True)
        return DeliveryStatus.SENT
    public = error.public[:500]
    if isinstance(error, TransientError):
        _breaker_result(target, ok=False)
    elif isinstance(error, PermanentError) and error.answered:
        _breaker_result(target, ok=True)  # the target answered: it is up, whatever it thought of this message
    if isinstance(error, PermanentError) or delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        if mine.update(status=DeliveryStatus.DEAD, lease_until=None, last_error=public):
            delivery.last_error = public
            _tell_owner(delivery)
        return DeliveryStatus.DEAD
    wait = backoff_seconds(delivery.attempts)
    if isinstance(error, TransientError) and error.retry_after:
        wait = max(wait, min(error.retry_after, settings.NOTIFY_BACKOFF_MAX_SECONDS))
    mine.update(
        status=DeliveryStatus.PENDING,
        next_attempt_at=now + timedelta(seconds=wait),
        lease_until=None,
        last_error=public,
    )
    return DeliveryStatus.PENDING


def record_sent(rows: list[Delivery]) -> None:
    """:func:`record` of a success for many rows at once; for deliveries that have no circuit breaker."""
    if rows:
        Delivery.objects.filter(pk__in=[row.pk for row in rows]).exclude(status=DeliveryStatus.SENT).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), lease_until=None, last_error=""
        )


def _tell_owner(delivery: Delivery) -> None:
    """A dead delivery is shown to its owner: its ``last_error``, and an in-app notification (not for in-app)."""
    if delivery.kind == ChannelKind.IN_APP:
        return
    owner_id = delivery.destination.owner_id
    notify(
        owner_id,
        f"dead:{delivery.key}",
        f"Not delivered by {delivery.get_kind_display()}: {delivery.subject}"[:200],
        f"{delivery.destination.target or delivery.kind}: {delivery.last_error}",
    )


def attempt(delivery: Delivery) -> DeliveryError | None:
    """One send under its own deadline, started now; the error, or None when sent. Never raises a DeliveryError."""
    deadline = Deadline.after(settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS)
    try:
        channel_for(delivery.kind).send(delivery, deadline)
    except DeliveryError as exc:
        return exc
    except TimeoutError as exc:  # a deadline that passed outside the channel's own classification
        return TransientError(f"timed out: {exc}", "failed: timed out")
    except Exception as exc:
        logger.exception("delivery raised", extra={"delivery": delivery.pk, "kind": delivery.kind})
        return TransientError(f"unexpected {type(exc).__name__}", "failed: internal error")
    return None


def _attempt_local(rows: list[Delivery]) -> list[tuple[Delivery, DeliveryError | None]]:
    """Attempt the database channels' rows, each channel's together when it sends many at once (in-app: one
    statement and one push round trip for the batch); the outcomes, one per row. A batch that fails is attempted
    row by row, so each row's failure is its own and counted."""
    outcomes: list[tuple[Delivery, DeliveryError | None]] = []
    by_kind: dict[str, list[Delivery]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    for kind, same in by_kind.items():
        send_many = getattr(channel_for(kind), "send_many", None)
        if send_many is not None and len(same) > 1:
            try:
                send_many(same, Deadline.after(settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS))
            except Exception:
                logger.warning("batched delivery raised; trying one by one", exc_info=True, extra={"kind": kind})
            else:
                outcomes.extend((row, None) for row in same)
                continue
        outcomes.extend((row, attempt(row)) for row in same)
    return outcomes


def _log(delivery: Delivery, status: str, error: DeliveryError | None) -> None:
    extra = {"delivery": delivery.pk, "kind": delivery.kind, "attempts": delivery.attempts, "status": status}
    if error is None:
        logger.info("delivery sent", extra=extra)
    else:
        logger.warning("delivery failed", extra={**extra, "error": str(error)[:300]})


def send_batch(rows: list[Delivery], pool: ThreadPoolExecutor) -> dict[str, int]:
    """Send claimed rows (network channels on ``pool``, database ones here) and record each outcome at once."""
    counts: dict[str, int] = {}
    futures: dict[Future[DeliveryError | None], Delivery] = {}
    local: list[Delivery] = []
    for row in rows:
        if getattr(channel_for(row.kind), "USES_DATABASE", False):
            local.append(row)
        else:
            futures[pool.submit(attempt, row)] = row

    def done(row: Delivery, error: DeliveryError | None) -> None:
        status = record(row, error, target_of(row))
        counts[status] = counts.get(status, 0) + 1
        _log(row, status, error)

    outcomes = _attempt_local(local)
    # Sent rows with no circuit breaker (the database channels') are recorded in one statement.
    sent = {row.pk for row, error in outcomes if error is None and not target_of(row)}
    record_sent([row for row, _error in outcomes if row.pk in sent])
    for row, error in outcomes:
        if row.pk in sent:
            counts[DeliveryStatus.SENT] = counts.get(DeliveryStatus.SENT, 0) + 1
            _log(row, DeliveryStatus.SENT, None)
        else:
            done(row, error)
    for future in as_completed(futures):
        done(futures[future], future.result())
    return counts


def run(seconds: float | None = None, clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    """Claim and send batches until nothing is due or ``seconds`` (``NOTIFY_RUN_SECONDS``) have passed."""
    stop = clock() + (settings.NOTIFY_RUN_SECONDS if seconds is None else seconds)
    totals: dict[str, int] = {}
    with ThreadPoolExecutor(settings.NOTIFY_SEND_THREADS, thread_name_prefix="notify-send") as pool:
        while clock() < stop:
            claimed = claim()
            totals["deferred"] = totals.get("deferred", 0) + claimed.deferred
            totals["dead"] = totals.get("dead", 0) + claimed.dead
            if not (claimed.rows or claimed.deferred or claimed.dead):
                break  # nothing due: deferred and dead rows left the due set, so a claim of only those is progress
            for status, count in send_batch(claimed.rows, pool).items():
                totals[status] = totals.get(status, 0) + count
    return totals
