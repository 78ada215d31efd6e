"""Fault tests of the outbox with a real Celery worker on the ``notify`` queue and real local receivers: a receiver
down for 60 s, a slow-loris receiver, and a worker SIGKILLed mid-send.

Ground truth is what the receivers logged (every complete request and its idempotency key), compared with the
delivery rows: every delivery arrives, none twice, except a delivery whose sender was killed after the receiver had
it (the documented crash window), which arrives twice with the same key. The test plays beat: it queues the sender
task every second.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction

from notifications.models import ChannelKind, CircuitBreaker, Delivery, DeliveryStatus, Notification
from notifications.outbox import Message, Outgoing, enqueue
from notifications.tasks import send_due
from simulator.standins import telegram as telegram_standin
from simulator.standins import twilio as twilio_standin
from simulator.standins.base import Store
from tests.conftest import ChildProcess, _answers_ping, subprocess_env, unique, wait_for
from tests.notifications.factories import deliveries, destination, user
from tests.notifications.receivers import Received, Receiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "ALERT_WEBHOOK_ALLOW_PRIVATE": "true",
    "NOTIFY_ATTEMPT_DEADLINE_SECONDS": "2",
    "NOTIFY_BACKOFF_BASE_SECONDS": "1",
    "NOTIFY_BACKOFF_MAX_SECONDS": "8",
    "NOTIFY_MAX_ATTEMPTS": "40",
    "NOTIFY_BREAKER_FAILURES": "3",
    "NOTIFY_BREAKER_COOLDOWN_SECONDS": "5",
    "NOTIFY_BATCH_SIZE": "8",
    "NOTIFY_SEND_THREADS": "4",
    "NOTIFY_RUN_SECONDS": "20",
}


@pytest.fixture
def notify_worker(spawn: Callable[..., ChildProcess]) -> Callable[[], ChildProcess]:
    """Start a real Celery worker on the ``notify`` queue (solo pool: one process, so SIGKILL kills the sender)."""
    from cryptoproject.celery import app

    app.control.purge()

    def start() -> ChildProcess:
        child = spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cryptoproject",
                "worker",
                "-Q",
                "notify",
                "-P",
                "solo",
                "-n",
                f"{unique('notify')}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=subprocess_env(**WORKER_ENV),
            name="notify-worker",
        )
        wait_for(lambda: child.proc.poll() is not None or _answers_ping(app), timeout=60, what="the worker")
        assert child.proc.poll() is None, child.output()
        return child

    return start


@pytest.fixture
def beat() -> Iterator[None]:
    """What beat does in production: queue the sender every second (here: every second, for the test's pace)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            send_due.delay()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for server in made:
        server.behaviour.release.set()
        server.stop()


def statuses(rows: list[Delivery]) -> Counter[str]:
    return Counter(Delivery.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True))


def test_a_receiver_down_for_60_s_gets_every_delivery_once_when_back(
    notify_worker: Callable[[], ChildProcess], beat: None, receivers: list[Receiver]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    rows = []
    for name in ("hana", "ivan"):
        owner = user(name)
        rows += deliveries(owner, destination(owner, ChannelKind.WEBHOOK, url), 10, prefix=f"down-{name}")
    notify_worker()
    down_until = time.monotonic() + 60
    while time.monotonic() < down_until:
        time.sleep(1)
    # Down for 60 s: nothing sent, nothing dead; the breaker tripped for the host after 3 failures in a row, and
    # since then only its half-open probes were attempted (the other deliveries deferred, not counted).
    assert statuses(rows) == Counter({DeliveryStatus.PENDING: 20}), statuses(rows)
    attempts = Counter(Delivery.objects.filter(pk__in=[r.pk for r in rows]).values_list("attempts", flat=True))
    breaker = CircuitBreaker.objects.get(target=f"webhook:127.0.0.1:{port}")
    assert breaker.failures >= 3
    assert breaker.open_until is not None
    assert attempts[0] > 0  # some deliveries were never attempted: the breaker deferred them
    assert sum(n * count for n, count in attempts.items()) == breaker.failures  # every failed attempt counted once
    back = Receiver(port)
    receivers.append(back)
    wait_for(lambda: statuses(rows) == Counter({DeliveryStatus.SENT: 20}), timeout=180, what="all 20 delivered")
    # Ground truth: the receiver's log. Every key once (a refused connection never reached it).
    assert Counter(back.keys()) == Counter({r.key: 1 for r in rows})


def test_a_slow_loris_receiver_costs_one_attempt_and_holds_nothing(
    notify_worker: Callable[[], ChildProcess], beat: None, receivers: list[Receiver]
) -> None:
    slow, fast = Receiver(), Receiver()
    receivers += [slow, fast]
    slow.behaviour.plan, slow.behaviour.interval = ["slow"], 1.0  # the first answer: one byte a second
    owner = user("jade")
    [trickled] = deliveries(owner, destination(owner, ChannelKind.WEBHOOK, slow.url()), 1, prefix="slow")
    others = deliveries(owner, destination(owner, ChannelKind.WEBHOOK, fast.url()), 4, prefix="fast")
    notify_worker()
    wait_for(lambda: statuses([trickled, *others]) == Counter({DeliveryStatus.SENT: 5}), timeout=120, what="sent")
    current = Delivery.objects.get(pk=trickled.pk)
    # The first attempt ended at the deadline: the client hung up with most of the answer unsent, and it counted.
    answer = wait_for(lambda: slow.slow_answers, timeout=120)[0]
    assert answer["hung_up"]
    assert int(answer["written"]) < int(answer["of"])
    assert current.attempts == 2
    assert Counter(slow.keys()) == Counter({trickled.key: 2})
    assert Counter(fast.keys()) == Counter({r.key: 1 for r in others})


def test_a_worker_killed_mid_send_the_lease_expires_and_another_sends_it(
    notify_worker: Callable[[], ChildProcess], beat: None, receivers: list[Receiver]
) -> None:
    held, calm = Receiver(), Receiver()
    receivers += [held, calm]
    owner = user("kai")
    others = deliveries(owner, destination(owner, ChannelKind.WEBHOOK, calm.url()), 4, prefix="calm")
    first = notify_worker()
    wait_for(lambda: statuses(others) == Counter({DeliveryStatus.SENT: 4}), timeout=60, what="the others sent")
    seen: list[tuple[str, int]] = []

    def kill_the_sender(got: Received) -> None:
        # The receiver has the whole request; before it answers, the worker sending it dies (SIGKILL).
        if not seen:
            current = Delivery.objects.get(key=got.key)
            seen.append((current.status, current.attempts))
            connection.close()
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(30)

    held.on_request = kill_the_sender
    [victim] = deliveries(owner, destination(owner, ChannelKind.WEBHOOK, held.url()), 1, prefix="kill")
    wait_for(lambda: first.proc.poll() is not None, timeout=60, what="the worker to be killed mid-send")
    assert seen == [(DeliveryStatus.SENDING, 1)]  # the attempt was committed before the send
    assert Delivery.objects.get(pk=victim.pk).status == DeliveryStatus.SENDING  # and nobody recorded an outcome
    notify_worker()
    wait_for(lambda: statuses([victim]) == Counter({DeliveryStatus.SENT: 1}), timeout=120, what="the resend")
    final = Delivery.objects.get(pk=victim.pk)
    assert final.attempts == 2
    # The crash window: the receiver had the message when its sender died, so it gets it twice, with one key.
    assert held.keys() == [victim.key, victim.key]
    assert Counter(calm.keys()) == Counter({r.key: 1 for r in others})


def test_a_committed_firing_kicks_the_sender_and_a_rolled_back_one_sends_nothing(
    spawn: Callable[..., ChildProcess], receivers: list[Receiver]
) -> None:
    # No beat here: the firing's commit alone (transaction.on_commit) queues the run that sends every channel.
    from cryptoproject.celery import app

    hook = Receiver()
    receivers.append(hook)
    twilio = twilio_standin.start("127.0.0.1", 0, Store(), "ACkick", "kick-token", "+15005550006")
    telegram = telegram_standin.start("127.0.0.1", 0, Store(), "7:kick")
    try:
        app.control.purge()
        env = {
            **WORKER_ENV,
            "TWILIO_API_URL": twilio.url,
            "TWILIO_ACCOUNT_SID": "ACkick",
            "TWILIO_AUTH_TOKEN": "kick-token",
            "TWILIO_FROM": "+15005550006",
            "TELEGRAM_API_URL": telegram.url,
            "TELEGRAM_BOT_TOKEN": "7:kick",
        }
        child = spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cryptoproject",
                "worker",
                "-Q",
                "notify",
                "-P",
                "solo",
                "-n",
                f"{unique('kick')}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=subprocess_env(**env),
            name="kick-worker",
        )
        wait_for(lambda: child.proc.poll() is not None or _answers_ping(app), timeout=60, what="the worker")
        owner = user("olga")
        destination(owner, ChannelKind.WEBHOOK, hook.url())
        destination(owner, ChannelKind.SMS, "+14155550100")
        destination(owner, ChannelKind.TELEGRAM, "424242")
        channels = [ChannelKind.IN_APP, ChannelKind.WEBHOOK, ChannelKind.SMS, ChannelKind.TELEGRAM]

        def fire(key: str) -> None:
            enqueue([Outgoing(owner.pk, channels, Message(key, f"{key} fired", "BTCUSDT crossed 60000"))])

        def fail_after_enqueuing() -> None:
            with transaction.atomic():
                fire("rolled-back")
                raise RuntimeError("the firing fails after enqueuing")

        with pytest.raises(RuntimeError):
            fail_after_enqueuing()
        with transaction.atomic():
            fire("committed")
        rows = list(Delivery.objects.filter(key__startswith="committed:"))
        assert len(rows) == 4
        assert not Delivery.objects.filter(key__startswith="rolled-back:").exists()
        wait_for(lambda: statuses(rows) == Counter({DeliveryStatus.SENT: 4}), timeout=60, what="all channels sent")
        assert len(hook.keys()) == 1
        assert [m["to"] for m in twilio.store.all()] == ["+14155550100"]
        assert [m["chat_id"] for m in telegram.store.all()] == ["424242"]
        assert Notification.objects.filter(owner=owner, key__startswith="committed:").count() == 1
    finally:
        for server in (twilio, telegram):
            server.shutdown()
            server.server_close()
