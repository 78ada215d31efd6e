"""``manage.py seed_demo_alerts``: two demo users with price alerts that fire during ``make demo``; refuses outside
DEBUG.

The demo's Binance simulator replays the bundled recordings from their start (Procfile), so the prices of its
first minutes are known before it starts: ``manage.py replay_summary`` (the simulator's) prints them, and this
command reads that JSON (``--prices``). Each price_cross level lies halfway between the replay's first price and
the highest (``up``) or lowest (``down``) price of its first 2, 5 or 10 minutes, so it is crossed within that time
(and again on each loop of the replay). Rules go through the API's validation
(:func:`dashboard.api.alerts.save_rule`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.models import AlertRule
from dashboard.api.alerts import save_rule
from dashboard.destinations import CleanDestination, create_destination
from notifications.models import ChannelKind, Destination

#: what each demo user watches: (Binance symbol, minutes of replay within which its levels are crossed)
USERS: dict[str, list[tuple[str, int]]] = {
    "alice": [("BTCUSDT", 2), ("BTCUSDT", 5), ("TRXUSDT", 2)],
    "bob": [("BTCUSDT", 10), ("TRXUSDT", 10)],
}
EXCHANGE = "binance"
WHALE_MIN_NOTIONAL = "250000"
COOLDOWN_S = 60
PHONES = {"alice": "+14155550101", "bob": "+14155550102"}
CHATS = {"alice": "100001", "bob": "100002"}


@dataclass(frozen=True)
class Level:
    """A price level the replay crosses going ``direction``."""

    level: Decimal
    direction: str


def crossing_levels(start: str, high: str, low: str) -> list[Level]:
    """Halfway between the first price and the window's high (up) and low (down), at the prices' precision; none
    on a side the price did not move to."""
    prices = [Decimal(start), Decimal(high), Decimal(low)]
    quantum = Decimal(1).scaleb(min(int(p.normalize().as_tuple().exponent) for p in prices))
    first, top, bottom = prices
    out = []
    up = ((first + top) / 2).quantize(quantum)
    if first < up <= top:
        out.append(Level(up, "up"))
    down = ((first + bottom) / 2).quantize(quantum)
    if bottom <= down < first:
        out.append(Level(down, "down"))
    return out


def read_prices(path: str) -> dict[str, Any]:
    """The ``replay_summary`` JSON; a CommandError when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"--prices {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandError(f"--prices {path}: expected the JSON object replay_summary prints")
    return data


class Command(BaseCommand):
    """Create (or reset) the demo users ``alice`` and ``bob`` with price alerts that fire during the demo."""

    help = "Seed two demo users with price alerts around the demo market's prices. Only with DJANGO_DEBUG=true."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--prices`` (replay_summary's JSON); ``--sms`` / ``--telegram``: also deliver on those channels."""
        parser.add_argument("--prices", required=True, help="the JSON that manage.py replay_summary printed")
        parser.add_argument("--sms", action="store_true", help="add an SMS destination and channel per user")
        parser.add_argument("--telegram", action="store_true", help="add a Telegram destination and channel")

    def handle(self, *args: Any, **options: Any) -> None:
        """Seed the users and print their credentials; a CommandError when DEBUG is off."""
        if not settings.DEBUG:
            raise CommandError("seed_demo_alerts only runs with DJANGO_DEBUG=true.")
        # From the environment, or a new one each run (printed below): never a fixed password.
        prices = read_prices(options["prices"])
        password = os.environ.get("DEMO_USERS_PASSWORD") or secrets.token_urlsafe(12)
        for name, watches in USERS.items():
            user, _ = get_user_model().objects.get_or_create(username=name, defaults={"email": f"{name}@localhost"})
            user.set_password(password)
            user.save()
            AlertRule.objects.filter(owner=user).delete()
            channels = [ChannelKind.IN_APP.value]
            for wanted, kind, target in (
                (options["sms"], ChannelKind.SMS, PHONES[name]),
                (options["telegram"], ChannelKind.TELEGRAM, CHATS[name]),
            ):
                if wanted:
                    if not Destination.objects.filter(owner=user, kind=kind, target=target).exists():
                        create_destination(user.pk, CleanDestination(kind, target, "generic"))
                    channels.append(kind.value)
            seen: set[tuple[str, Decimal, str]] = set()
            for symbol, minutes in watches:
                replay = prices.get(symbol)
                if not isinstance(replay, dict) or str(minutes) not in replay.get("windows", {}):
                    raise CommandError(f"--prices: no {minutes}-minute window for {symbol}")
                window = replay["windows"][str(minutes)]
                for level in crossing_levels(replay["start"], window["high"], window["low"]):
                    if (symbol, level.level, level.direction) in seen:
                        continue  # a wider window's extreme can be the narrower one's
                    seen.add((symbol, level.level, level.direction))
                    save_rule(
                        user,
                        {
                            "kind": "price_cross",
                            "exchange": EXCHANGE,
                            "symbol": symbol,
                            "params": {"level": str(level.level), "direction": level.direction},
                            "channels": channels,
                            "cooldown_s": COOLDOWN_S,
                        },
                    )
            save_rule(
                user,
                {"kind": "whale", "params": {"min_notional": WHALE_MIN_NOTIONAL}, "channels": channels},
            )
            self.stdout.write(
                f"  Demo user:  {name} / {password}   "
                f"({len(seen)} price alerts + 1 whale alert on {', '.join(channels)})"
            )
