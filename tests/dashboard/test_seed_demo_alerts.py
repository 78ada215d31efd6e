"""``make demo``'s alerts: ``replay_summary`` (the simulator's) prints the replay's first prices, ``seed_demo_alerts``
places two demo users' price alerts on them. Each alert is checked to fire on the bundled recording with the
price_cross semantics (computed here independently); credentials are never fixed; DEBUG only."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from alerts.models import AlertRule
from dashboard.management.commands.seed_demo_alerts import USERS
from notifications.models import Destination
from simulator.replay import read_many
from tests.conftest import DATA

pytestmark = pytest.mark.django_db
REPLAYS = {
    "BTCUSDT": [DATA / "binance-spot-ws" / "btcusdt_20240808.gz", DATA / "binance-spot-ws" / "btcusdt_20240809.gz"],
    "TRXUSDT": [DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv"],
}


def fires_within(symbol: str, level: Decimal, direction: str, minutes: int) -> bool:
    """Whether a price_cross rule fires on the replay's first ``minutes`` minutes (the first trade sets state)."""
    trades = read_many(REPLAYS[symbol])
    first = next(trades)
    previous = Decimal(first.price)
    for trade in itertools.takewhile(lambda t: t.trade_time <= first.trade_time + minutes * 60_000, trades):
        price = Decimal(trade.price)
        if direction == "up" and previous < level <= price:
            return True
        if direction == "down" and previous > level >= price:
            return True
        previous = price
    return False


@pytest.fixture
def prices(tmp_path: Path) -> str:
    out = StringIO()
    files = [str(f) for files in REPLAYS.values() for f in files]
    call_command("replay_summary", "--replay", *files, "--minutes", "2,5,10", stdout=out)
    path = tmp_path / "prices.json"
    path.write_text(out.getvalue())
    return str(path)


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo_alerts", *args, stdout=out)
    return out.getvalue()


def test_replay_summary_is_the_recordings_first_prices(prices: str) -> None:
    summary = json.loads(Path(prices).read_text())
    assert set(summary) == {"BTCUSDT", "TRXUSDT"}
    trades = list(itertools.islice(read_many(REPLAYS["BTCUSDT"]), 5000))
    assert summary["BTCUSDT"]["start"] == trades[0].price
    in_two = [Decimal(t.price) for t in trades if t.trade_time <= trades[0].trade_time + 120_000]
    assert Decimal(summary["BTCUSDT"]["windows"]["2"]["high"]) == max(in_two)
    assert Decimal(summary["BTCUSDT"]["windows"]["2"]["low"]) == min(in_two)
    with pytest.raises(CommandError, match="minutes"):
        call_command("replay_summary", "--replay", str(REPLAYS["TRXUSDT"][0]), "--minutes", "x")
    with pytest.raises(CommandError, match="no such file"):
        call_command("replay_summary", "--replay", "/nonexistent.gz")


def test_refused_without_debug(settings: Any, prices: str) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        seed("--prices", prices)


def test_two_users_with_price_alerts_the_replay_crosses(
    settings: Any, monkeypatch: pytest.MonkeyPatch, prices: str
) -> None:
    settings.DEBUG = True
    monkeypatch.setenv("DEMO_USERS_PASSWORD", "from-the-env-123")
    output = seed("--prices", prices)
    for name in USERS:
        assert f"{name} / from-the-env-123" in output
        user = authenticate(username=name, password="from-the-env-123")
        assert user is not None
        rules = list(AlertRule.objects.filter(owner=user, kind="price_cross"))
        assert len(rules) >= 3
        longest = max(minutes for _symbol, minutes in USERS[name])
        for rule in rules:
            assert (rule.exchange, rule.channels, rule.cooldown_s) == ("binance", ["in_app"], 60)
            assert fires_within(rule.symbol, Decimal(rule.params["level"]), rule.params["direction"], longest), rule
        assert AlertRule.objects.filter(owner=user, kind="whale").count() == 1
    # Again: the same rules, not twice as many; without the variable a new password is generated and printed.
    before = AlertRule.objects.count()
    monkeypatch.delenv("DEMO_USERS_PASSWORD")
    output = seed("--prices", prices, "--sms", "--telegram")
    assert AlertRule.objects.count() == before
    password = output.split("alice / ")[1].split()[0]
    assert password != "from-the-env-123"
    assert len(password) >= 12
    assert authenticate(username="alice", password=password) is not None
    assert set(AlertRule.objects.get(owner__username="bob", kind="whale").channels) == {"in_app", "sms", "telegram"}
    assert Destination.objects.filter(kind="sms").count() == 2
    seed("--prices", prices, "--sms")
    assert Destination.objects.filter(kind="sms").count() == 2


def test_bad_prices_file(settings: Any, tmp_path: Path) -> None:
    settings.DEBUG = True
    with pytest.raises(CommandError, match="--prices"):
        seed("--prices", str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CommandError, match="JSON object"):
        seed("--prices", str(tmp_path / "list.json"))
    (tmp_path / "short.json").write_text('{"BTCUSDT": {"start": "1", "windows": {}}}')
    with pytest.raises(CommandError, match="2-minute window for BTCUSDT"):
        seed("--prices", str(tmp_path / "short.json"))
