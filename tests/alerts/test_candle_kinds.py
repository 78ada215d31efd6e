"""Candle kinds (indicator, volume_spike) on real hourly klines stored chunk by chunk, each chunk's candles and
indicators written and the rules evaluated in one transaction (``analytics.signals.series_updated``, as
``update_series`` sends it), against a brute force written plainly here from docs/ALERTS.md."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from alerts.models import Alert, AlertRule
from analytics import indicators
from analytics.models import Candle, IndicatorPoint
from analytics.signals import series_updated
from tests.analytics.test_indicators_vectorised import KLINE_DIR

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOUR_MS = 3_600_000
CHUNK = 40
Bar = tuple[int, Decimal, Decimal]  # open ms, close, volume


def klines(count: int) -> list[Bar]:
    path = sorted(KLINE_DIR.glob("BTCUSDT-1h-*.zip"))[-1]
    with zipfile.ZipFile(path) as archive:
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    bars = []
    for line in lines[:count]:
        f = line.split(",")
        open_ms = int(f[0]) // 1000 if int(f[0]) > 10**14 else int(f[0])  # newer archives are in microseconds
        bars.append((open_ms, Decimal(f[4]), Decimal(f[5])))
    return bars


def feed(bars: list[Bar]) -> None:
    """Store the bars chunk by chunk, as live updates would: candles, indicators and the signal in one transaction."""
    for i in range(0, len(bars), CHUNK):
        chunk = bars[i : i + CHUNK]
        times = [datetime.fromtimestamp(ms / 1000, UTC) for ms, _, _ in chunk]
        with transaction.atomic():
            Candle.objects.bulk_create(
                Candle(
                    exchange="binance",
                    symbol="BTCUSDT",
                    interval="1h",
                    open_time=t,
                    open=close,
                    high=close,
                    low=close,
                    close=close,
                    volume=volume,
                    quote_volume=volume * close,
                    trade_count=1,
                    vwap=close,
                )
                for t, (_, close, volume) in zip(times, chunk, strict=True)
            )
            indicators.update_indicators("binance", "BTCUSDT", "1h", times[0])
            series_updated.send(sender=None, exchange="binance", symbol="BTCUSDT", touched={"1h": times})


def stored_series() -> list[dict]:
    points = {p.open_time: p for p in IndicatorPoint.objects.filter(interval="1h")}
    out = []
    for c in Candle.objects.filter(interval="1h").order_by("open_time"):
        p = points.get(c.open_time)
        out.append({"ms": int(c.open_time.timestamp() * 1000), "close": c.close, "volume": c.volume, "p": p})
    return out


def brute(rule: AlertRule, series: list[dict]) -> list[int]:
    """Open times (ms) of the closed candles the rule fires on: after the newest candle closed at its first
    evaluation (the first chunk), each with its predecessor exactly one hour before (no hole)."""
    prm = rule.params
    first_seen = series[CHUNK - 2]["ms"]  # the first chunk's newest closed candle only sets the state
    out = []
    for i in range(1, len(series) - 1):  # the newest candle is still open
        bar, prev = series[i], series[i - 1]
        if bar["ms"] <= first_seen or bar["ms"] - prev["ms"] != HOUR_MS:
            continue
        if rule.kind == "volume_spike":
            n = prm["n"]
            window = series[i - n : i]
            if len(window) == n and all(window[k + 1]["ms"] - window[k]["ms"] == HOUR_MS for k in range(n - 1)):
                mean = sum(w["volume"] for w in window) / n
                if bar["volume"] >= Decimal(prm["factor"]) * mean:
                    out.append(bar["ms"])
            continue

        def diff(b: dict, band: str = "") -> Decimal | None:
            p = b["p"]
            if p is None:
                return None
            name = prm["indicator"]
            if name == "rsi":
                return None if p.rsi is None else p.rsi - Decimal(prm["level"])
            if name == "macd":
                return None if p.macd is None or p.macd_signal is None else p.macd - p.macd_signal
            if name in ("sma", "ema"):
                v = getattr(p, name).get(str(prm["period"]))
                return None if v is None else b["close"] - Decimal(v)
            v = p.bb_upper if band == "upper" else p.bb_lower
            return None if v is None else b["close"] - v

        d = prm.get("direction", "both")
        if prm["indicator"] == "bollinger":
            a, b = diff(prev, "upper"), diff(bar, "upper")
            up = d != "down" and a is not None and b is not None and a < 0 <= b
            a, b = diff(prev, "lower"), diff(bar, "lower")
            down = d != "up" and a is not None and b is not None and a > 0 >= b
        else:
            a, b = diff(prev), diff(bar)
            up = d != "down" and a is not None and b is not None and a < 0 <= b
            down = d != "up" and a is not None and b is not None and a > 0 >= b
        if up or down:
            out.append(bar["ms"])
    return out


RULES: list[tuple[str, dict[str, Any]]] = [
    ("indicator", {"indicator": "rsi", "level": "50", "direction": "both"}),
    ("indicator", {"indicator": "rsi", "level": "30", "direction": "down"}),
    ("indicator", {"indicator": "macd", "direction": "both"}),
    ("indicator", {"indicator": "sma", "period": 25, "direction": "up"}),
    ("indicator", {"indicator": "ema", "period": 7, "direction": "both"}),
    ("indicator", {"indicator": "bollinger", "direction": "both"}),
    ("volume_spike", {"factor": "2", "n": 10}),
    ("volume_spike", {"factor": "0.01", "n": 5}),  # nearly every candle with 5 contiguous predecessors
]


def make_rules() -> list[AlertRule]:
    owner = get_user_model().objects.create_user("carol", password="pw-carol-123")
    return [
        AlertRule.objects.create(
            owner=owner, kind=kind, exchange="binance", symbol="BTCUSDT", params={"interval": "1h", **params}
        )
        for kind, params in RULES
    ]


def fired(rule: AlertRule) -> list[int]:
    return sorted(int(t.split(":")[2]) for t in Alert.objects.filter(rule=rule).values_list("trigger", flat=True))


def test_candle_kinds_match_the_brute_force_and_fire_once(settings):
    rules = make_rules()
    bars = klines(400)
    feed(bars)
    series = stored_series()
    for rule in rules:
        assert fired(rule) == brute(rule, series), rule.params
    counts = {r.pk: len(fired(r)) for r in rules}
    assert all(counts.values()), counts
    # The same update again (a retried task) fires nothing new.
    total = Alert.objects.count()
    with transaction.atomic():
        indicators.update_indicators("binance", "BTCUSDT", "1h", series[0]["p"].open_time)
        touched = [c.open_time for c in Candle.objects.all()]
        series_updated.send(sender=None, exchange="binance", symbol="BTCUSDT", touched={"1h": touched})
    assert Alert.objects.count() == total


def test_no_cross_and_no_spike_across_a_hole(settings):
    rules = make_rules()
    bars = klines(400)
    cut = 205
    holed = bars[:cut] + bars[cut + 3 :]  # three hours missing: the indicators bridge it, the rules do not
    feed(holed)
    series = stored_series()
    after_hole = holed[cut][0]
    for rule in rules:
        got = fired(rule)
        assert got == brute(rule, series), rule.params
        assert after_hole not in got
    # The near-always spike rule fires on every candle with 5 contiguous predecessors, so the hole is what stops it.
    spiky = fired(rules[-1])
    assert holed[cut - 1][0] in spiky
    assert not any(after_hole <= ms < after_hole + 5 * HOUR_MS for ms in spiky)
    assert after_hole + 5 * HOUR_MS in spiky
