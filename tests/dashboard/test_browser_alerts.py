"""Issue 22 end to end, in headless Chromium, through the pages only: a user signs in, adds a market to the
watchlist, an SMS destination and a price alert (in-app and SMS); the exchange simulator replays the bundled real
recording, the market crosses the level, the toast appears in the open page, the Twilio stand-in holds the SMS, and
"My dashboard" lists the alert and the rule's state (live, then after a reload). Another user signed in meanwhile is
told nothing.

Real servers and processes: simulator (replay) -> ingest -> Kafka -> consume_trades (rules evaluated in its store
transaction, alert and outbox rows in it) -> Celery worker (the ``notify`` queue's sender, configured for the Twilio
stand-in, ``manage.py run_standins``) -> Channels -> daphne -> the browser. Screenshots to ``artifacts/screenshots/``
(alerts-toast.png, alerts-me.png).
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from alerts.models import Alert, AlertRule
from analytics.models import Trade
from benchmarks.harness import free_port
from cryptoproject.queues import CeleryQueue
from ingest.records import TradeRecord
from notifications.models import Delivery, Destination, Notification
from simulator.replay import read_trades
from tests.conftest import ROOT, ChildProcess, KafkaTopics, _answers_ping, manage, subprocess_env, wait_for
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, start_consumer, start_daphne

RECORDING = ROOT / "data/binance-spot-ws/btcusdt_20240808.gz"
EXCHANGE, SYMBOL = "binance", "BTCUSDT"
PHONE = "+14155550100"  # a valid E.164 number (the stand-in refuses invalid ones with Twilio's 21211)
# The stand-in's account; the worker is configured with the same (as `make demo` does).
TWILIO = {
    "TWILIO_ACCOUNT_SID": "ACbrowser00000000000000000000000",
    "TWILIO_AUTH_TOKEN": "browser-token",
    "TWILIO_FROM": "+15005550006",
}
PASSWORD = "browser-alerts-pass-123"  # a throwaway user in the test database
HEAD = 5_000  # the recorded trades the test looks at (the level is crossed within the first few dozen)

T = TypeVar("T")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)"),
]


def recorded_head() -> list[TradeRecord]:
    """The recording's first trades, read independently of the pipeline."""
    return list(itertools.islice(read_trades(RECORDING), HEAD))


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros, positional: its str() is what a user types (``61840``, never ``6.184E+4``,
    which the form rightly refuses)."""
    return Decimal(format(value.normalize(), "f"))


def level_below_start(trades: list[TradeRecord]) -> Decimal:
    """A level one dollar under the recording's first price: a `down` rule crosses it within the first trades."""
    return plain(Decimal(trades[0].price) - 1)


def first_down_cross(trades: list[TradeRecord], after_id: int, level: Decimal) -> TradeRecord:
    """The first trade from ``after_id`` on (the first one the rule sees only sets its state) with a price at or
    below ``level`` right after one above it (docs/ALERTS.md, price_cross)."""
    seen = [t for t in trades if t.trade_id >= after_id]
    for previous, trade in itertools.pairwise(seen):
        if Decimal(trade.price) <= level < Decimal(previous.price):
            return trade
    raise AssertionError(f"the recording's first {HEAD} trades never cross {level} downward")


def orm(query: Callable[[], T]) -> T:
    """Run a database query from inside Playwright's sync API (its event loop runs in this thread, so Django refuses
    the ORM here): in a thread of its own, whose connection is closed after."""

    def run() -> T:
        try:
            return query()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def standin_messages(base: str) -> list[dict[str, Any]]:
    """What the Twilio stand-in accepted (its listing endpoint)."""
    with urlopen(f"{base}/_messages", timeout=5) as answer:
        return list(json.load(answer))


@pytest.fixture
def twilio_standin(spawn: Callable[..., ChildProcess], tmp_path: Path) -> tuple[str, Path]:
    """``manage.py run_standins`` on free ports: the Twilio stand-in's base URL and its JSON lines file."""
    ports = free_port(), free_port()
    child = spawn(
        manage(
            "run_standins", "--twilio-port", str(ports[0]), "--telegram-port", str(ports[1]), "--dir", str(tmp_path)
        ),
        env=subprocess_env(**TWILIO),
        name="standins",
    )
    found = wait_for(
        lambda: re.search(r"Twilio stand-in on (http://\S+) ", child.output()) or child.proc.poll() is not None,
        timeout=60,
        what="the stand-ins to listen",
    )
    assert child.proc.poll() is None, child.output()
    return found.group(1), tmp_path / "twilio.jsonl"


def start_worker(spawn: Callable[..., ChildProcess], twilio_url: str) -> ChildProcess:
    """A Celery worker on every queue (the stats for the tiles, the notify queue's outbox sender), its SMS channel
    pointed at the stand-in."""
    from cryptoproject.celery import app

    app.control.purge()
    child = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cryptoproject",
            "worker",
            "-Q",
            ",".join(CeleryQueue),
            "-c",
            "2",
            "-n",
            f"alerts-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env=subprocess_env(TWILIO_API_URL=twilio_url, **TWILIO),
        name="celery",
    )
    wait_for(lambda: child.proc.poll() is not None or _answers_ping(app), timeout=60, what="the worker to answer")
    assert child.proc.poll() is None, child.output()
    return child


def start_replay(spawn: Callable[..., ChildProcess]) -> list[ChildProcess]:
    """The Binance simulator replaying the recording at its recorded pace (times shifted to now), and ingest."""
    simulator = spawn(
        manage(
            "simulate_exchange",
            "--exchange",
            EXCHANGE,
            "--port",
            "0",
            "--speed",
            "1",
            "--present",
            "--replay",
            str(RECORDING),
        ),
        name="simulator",
    )
    found = wait_for(
        lambda: re.search(r"listening on ws://[\d.]+:(\d+)", simulator.output()) or simulator.proc.poll() is not None,
        timeout=60,
        what="the simulator to listen",
    )
    assert simulator.proc.poll() is None, simulator.output()
    port = found.group(1)
    ingest = spawn(
        manage(
            "ingest", "--exchange", EXCHANGE, "--symbols", SYMBOL.lower(), "--channels", "trades", "--metrics-port", "0"
        ),
        env=subprocess_env(BINANCE_WS_URL=f"ws://127.0.0.1:{port}", BINANCE_REST_URL=f"http://127.0.0.1:{port}"),
        name="ingest",
    )
    return [simulator, ingest]


def sign_in(page: Any, site: str, username: str) -> None:
    """Sign in through the login page: My dashboard sends us there, and it sends us back."""
    page.goto(f"{site}/me/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/me/$"))


def submit(page: Any, form: str) -> None:
    """Submit ``form``, wait for the page it leads to, and fail with the form's errors when it shows any."""
    with page.expect_navigation() as navigation:
        page.click(f"{form} button[type=submit]")
    response = navigation.value
    shown = page.locator(".field-error").all_inner_texts()
    assert response is not None, page.url
    assert (response.status, shown) == (200, []), page.url


@pytest.mark.django_db(transaction=True)
def test_a_price_alert_set_in_the_pages_fires_a_toast_and_an_sms(
    kafka_topics: KafkaTopics,
    spawn: Callable[..., ChildProcess],
    twilio_standin: tuple[str, Path],
) -> None:
    from playwright.sync_api import sync_playwright

    twilio_url, twilio_file = twilio_standin
    trades = recorded_head()
    level = level_below_start(trades)
    user = get_user_model().objects.create_user("dana", email="dana@example.com", password=PASSWORD)
    get_user_model().objects.create_user("eve", email="eve@example.com", password=PASSWORD)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    worker = start_worker(spawn, twilio_url)
    port = free_port()
    server = start_daphne(spawn, port)
    site = f"http://127.0.0.1:{port}"
    consumer = start_consumer(spawn)
    children = [worker, server, consumer]
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: wait_for_function evaluates its expression with eval, which the pages' CSP refuses; the
            # pages under the policy are tests/dashboard/test_csp.py's.
            page = browser.new_context(viewport={"width": 1440, "height": 1000}, bypass_csp=True).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            sign_in(page, site, "dana")

            # The watchlist: one market.
            page.goto(f"{site}/accounts/watchlist/")
            page.select_option("select[name=exchange]", EXCHANGE)
            page.fill("input[name=symbol]", SYMBOL)
            submit(page, "form.filters")
            assert SYMBOL in page.inner_text("main")

            # An SMS destination (E.164).
            page.goto(f"{site}/alerts/destinations/")
            page.select_option("#destination-form select[name=kind]", "sms")
            page.fill("#destination-form input[name=target]", PHONE)
            submit(page, "#destination-form")
            page.wait_for_selector("#destination-table")
            assert PHONE in page.inner_text("#destination-table")

            # The price alert: down through a level just under where the recording starts, in the page and by SMS.
            page.goto(f"{site}/alerts/")
            page.select_option("#rule-form select[name=kind]", "price_cross")
            page.select_option("#rule-form select[name=exchange]", EXCHANGE)
            page.fill("#rule-form input[name=symbol]", SYMBOL)
            page.fill("#rule-form input[name=level]", str(level))
            page.select_option("#rule-form select[name=direction]", "down")
            page.check("#rule-form input[name=channels][value=in_app]")
            page.check("#rule-form input[name=channels][value=sms]")
            # An hour of trade time: one firing in this test's run, the later crossings counted as suppressed.
            page.fill("#rule-form input[name=cooldown_s]", "3600")
            submit(page, "#rule-form")
            page.wait_for_selector("#rule-table")
            rule = orm(lambda: AlertRule.objects.get(owner=user))
            assert (rule.kind, rule.exchange, rule.symbol) == ("price_cross", EXCHANGE, SYMBOL)
            assert (Decimal(rule.params["level"]), rule.params["direction"]) == (level, "down")
            assert rule.cooldown_s == 3600
            assert sorted(rule.channels) == ["in_app", "sms"]
            assert orm(Destination.objects.filter(owner=user, kind="sms", target=PHONE).exists)

            # My dashboard stays open, its notifications socket connected, while the market moves.
            page.goto(f"{site}/me/")
            page.wait_for_selector('#tiles .tile[data-symbol="BTCUSDT"]')
            page.wait_for_selector("#toasts[data-state=live]", state="attached", timeout=30_000)
            page.evaluate("() => { window.__sameDocument = true; }")
            # Another user, signed in on their own dashboard meanwhile: not told of dana's alert.
            other = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True).new_page()
            other.on("pageerror", lambda exc: errors.append(str(exc)))
            sign_in(other, site, "eve")
            other.wait_for_selector("#toasts[data-state=live]", state="attached", timeout=30_000)
            children += start_replay(spawn)
            try:
                toast = page.wait_for_selector("#toasts .toast", timeout=180_000)
            except Exception:
                for child in children:  # shown with the failure: where the alert stopped
                    print(child.log.name, child.output()[-3000:])
                print("alerts:", orm(lambda: list(Alert.objects.values())))
                print("deliveries:", orm(lambda: list(Delivery.objects.values())))
                raise
            assert toast is not None
            # Read now: a toast goes after 15 s.
            title, text = toast.eval_on_selector("strong", "e => e.textContent"), toast.inner_text()
            toast_body = toast.eval_on_selector(".toast-body", "e => e.textContent")
            page.screenshot(path=str(SCREENSHOTS / "alerts-toast.png"), full_page=False)

            alert = orm(lambda: Alert.objects.get(rule=rule))
            first_seen = orm(Trade.objects.filter(exchange=EXCHANGE, symbol=SYMBOL).order_by("trade_id").first)
            assert first_seen is not None
            crossing = first_down_cross(trades, first_seen.trade_id, level)
            assert alert.trade_id == crossing.trade_id
            assert alert.price == Decimal(crossing.price)
            subject = f"{SYMBOL} crossed {level} downward"
            # The title, then the rest of the alert's message (which starts with the title): said once.
            assert (title, toast_body) == (subject, alert.message.removeprefix(f"{subject}: "))
            assert text.count(subject) == 1
            assert orm(Notification.objects.filter(owner=user, body=alert.message).count) == 1

            # The SMS reached the stand-in, to the user's number, with the alert's text.
            sms = wait_for(
                lambda: [m for m in standin_messages(twilio_url) if m["to"] == PHONE],
                timeout=60,
                what="the SMS at the Twilio stand-in",
            )
            assert len(sms) == 1, sms
            assert sms[0]["from"] == TWILIO["TWILIO_FROM"]
            assert sms[0]["body"] == alert.message  # the message once (its first words are the subject)
            assert [json.loads(line)["sid"] for line in twilio_file.read_text().splitlines()] == [sms[0]["sid"]]

            # The tile is live: over the socket (no reload) it counts the trades up to the crossing one and beyond.
            seen = sum(1 for t in trades if first_seen.trade_id <= t.trade_id <= crossing.trade_id)
            count = '[data-symbol="BTCUSDT"] [data-field=trade_count]'
            page.wait_for_function(f"Number(document.querySelector('{count}').dataset.value) > {seen}", timeout=60_000)

            # Pushed to its owner only: eve's open page (socket live all along) got no toast, and lists no alert.
            assert other.get_attribute("#toasts", "data-state") == "live"
            assert other.locator("#toasts .toast").count() == 0
            other.reload()
            assert other.locator("#recent-alert-table tbody tr").count() == 0
            assert other.is_visible("#recent-alerts-empty")

            # The in-app notifications list holds it too.
            notes = page.context.new_page()
            notes.goto(f"{site}/notifications/")
            assert alert.message in notes.inner_text("main")
            notes.close()

            # My dashboard shows the alert and the rule's state: pushed with the toast (no reload), then as the server
            # renders it after a reload, the same.
            fired = datetime.fromtimestamp(alert.traded_at.timestamp(), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            for reload in (False, True):
                if reload:
                    page.reload()
                row = page.locator(f'#recent-alert-table tr[data-alert="{alert.pk}"]')
                row.wait_for()
                assert page.is_hidden("#recent-alerts-empty")
                assert page.locator("#recent-alert-table tbody tr").count() == 1
                assert row.locator(".alert-message").inner_text() == alert.message
                assert row.locator("td.num").inner_text() == format(alert.price.normalize(), "f")
                assert row.get_attribute("data-rule") == str(rule.pk)
                rule_row = page.locator(f'#my-rule-table tr[data-rule="{rule.pk}"]')
                assert rule_row.get_attribute("data-active") == "true"
                assert (rule_row.locator("[data-field=state]").text_content() or "").strip() == "active"
                assert rule_row.locator("[data-field=fired]").inner_text() == "1"
                assert rule_row.locator("[data-field=last_fired]").inner_text() == fired
                if not reload:
                    assert page.evaluate("() => window.__sameDocument === true")
            page.screenshot(path=str(SCREENSHOTS / "alerts-me.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []


def crosses(previous: TradeRecord, trade: TradeRecord, level: Decimal) -> bool:
    """Whether ``trade`` crosses ``level`` after ``previous`` (price_cross ``both``: up or down)."""
    before, now = Decimal(previous.price), Decimal(trade.price)
    return before < level <= now or before > level >= now


@pytest.mark.django_db(transaction=True)
def test_a_rule_saved_while_the_market_runs_fires_on_a_later_crossing(
    kafka_topics: KafkaTopics,
    spawn: Callable[..., ChildProcess],
    twilio_standin: tuple[str, Path],
) -> None:
    # The demo's situation: the market is already flowing (the consumer holds its rule book, with no rule) when the
    # user saves a rule in the page. The rule sees only later trades, and fires on the first crossing among them.
    from playwright.sync_api import sync_playwright

    twilio_url, _ = twilio_standin
    user = get_user_model().objects.create_user("fay", email="fay@example.com", password=PASSWORD)
    trades = list(itertools.islice(read_trades(RECORDING), 4 * HEAD))
    worker = start_worker(spawn, twilio_url)
    port = free_port()
    server = start_daphne(spawn, port)
    site = f"http://127.0.0.1:{port}"
    children = [worker, server, start_consumer(spawn), *start_replay(spawn)]
    errors: list[str] = []
    wait_for(
        lambda: orm(Trade.objects.filter(exchange=EXCHANGE, symbol=SYMBOL).exists),
        timeout=120,
        what="the replay's first stored trades",
    )

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000}, bypass_csp=True)
            watching = context.new_page()
            watching.on("pageerror", lambda exc: errors.append(str(exc)))
            sign_in(watching, site, "fay")
            watching.wait_for_selector("#toasts[data-state=live]", state="attached", timeout=30_000)

            # The level: the median of the next 300 recorded trades after the newest stored one (both directions):
            # the coming trades lie on both sides of it.
            newest = orm(Trade.objects.filter(exchange=EXCHANGE, symbol=SYMBOL).order_by("-trade_id").first)
            assert newest is not None
            ahead = sorted(Decimal(t.price) for t in trades if newest.trade_id < t.trade_id <= newest.trade_id + 300)
            assert len(ahead) == 300
            level = plain(ahead[len(ahead) // 2])

            form = context.new_page()
            form.on("pageerror", lambda exc: errors.append(str(exc)))
            form.goto(f"{site}/alerts/")
            form.select_option("#rule-form select[name=kind]", "price_cross")
            form.select_option("#rule-form select[name=exchange]", EXCHANGE)
            form.fill("#rule-form input[name=symbol]", SYMBOL)
            form.fill("#rule-form input[name=level]", str(level))
            form.select_option("#rule-form select[name=direction]", "both")
            form.check("#rule-form input[name=channels][value=in_app]")
            form.fill("#rule-form input[name=cooldown_s]", "3600")
            submit(form, "#rule-form")
            form.wait_for_selector("#rule-table")
            rule = orm(lambda: AlertRule.objects.get(owner=user))

            try:
                watching.wait_for_selector("#toasts .toast", timeout=180_000)
            except Exception:
                for child in children:
                    print(child.log.name, child.output()[-3000:])
                print("rule:", orm(lambda: list(AlertRule.objects.values())))
                raise
            alert = orm(lambda: Alert.objects.get(rule=rule))
            assert alert.trade_id is not None
            index = next(i for i, t in enumerate(trades) if t.trade_id == alert.trade_id)
            # A real crossing of the recording, by a trade stored after the rule was saved (ids increase).
            assert crosses(trades[index - 1], trades[index], level)
            assert alert.trade_id > newest.trade_id
            assert f"{SYMBOL} crossed {level}" in watching.inner_text("#toasts")
        finally:
            browser.close()
    assert errors == []
