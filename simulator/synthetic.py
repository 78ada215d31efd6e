"""Synthetic trades: a random walk per symbol with heavy-tailed (Pareto) trade sizes, so whale trades (quote
notional >= $100,000) happen regularly, about 0.2 % of trades. Deterministic for a seed."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterator, Sequence

from ingest.records import TradeRecord
from simulator.feed import split_symbol

START_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "TRX": 0.23, "DOGE": 0.12}
# Notional = SCALE x Pareto(ALPHA): P(notional >= $100k) = (SCALE / 100000) ** ALPHA, about 0.2 %.
NOTIONAL_SCALE = 100.0
NOTIONAL_ALPHA = 0.9
NOTIONAL_CAP = 20_000_000.0
QTY_DECIMALS = 5


def tick_decimals(price: float) -> int:
    """Price decimals like the exchanges' tick sizes: cents for large prices, more for small ones."""
    if price >= 1000:
        return 2
    if price >= 10:
        return 3
    if price >= 1:
        return 4
    return 6


def _decimal(units: int, decimals: int, width: int = 8) -> str:
    # Integer arithmetic: the string is exact, padded to Binance's 8 decimals.
    whole, fraction = divmod(units, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}{'0' * (width - decimals)}"


class _Walk:
    __slots__ = ("decimals", "next_id", "price", "symbol")

    def __init__(self, symbol: str, price: float, first_id: int) -> None:
        self.symbol = symbol
        self.price = price
        self.decimals = tick_decimals(price)
        self.next_id = first_id


def synthetic_trades(
    symbols: Sequence[str],
    rate: float,
    *,
    exchange: str = "binance",
    seed: int = 0,
    first_id: int = 1_000_000,
    start_ms: int | None = None,
    volatility: float = 0.0002,
) -> Iterator[TradeRecord]:
    """An endless stream of ``rate`` trades per second in total (trade times advance by 1/rate s), spread at
    random over ``symbols``; ids are consecutive per symbol. Times start at the first ``next()``."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if not symbols:
        raise ValueError("at least one symbol is needed")
    rng = random.Random(seed)
    walks = [_Walk(symbol.upper(), START_PRICES.get(split_symbol(symbol)[0], 100.0), first_id) for symbol in symbols]
    start = time.time() * 1000.0 if start_ms is None else float(start_ms)
    step = 1000.0 / rate
    gauss, pareto, choice, draw = rng.gauss, rng.paretovariate, rng.choice, rng.random
    qty_scale = 10**QTY_DECIMALS
    for n in itertools.count():
        walk = choice(walks)
        walk.price *= math.exp(gauss(0.0, volatility))
        price_units = max(round(walk.price * 10**walk.decimals), 1)
        price = price_units / 10**walk.decimals
        notional = min(NOTIONAL_SCALE * pareto(NOTIONAL_ALPHA), NOTIONAL_CAP)
        qty_units = max(round(notional / price * qty_scale), 1)
        millis = int(start + n * step)
        yield TradeRecord(
            exchange=exchange,
            symbol=walk.symbol,
            trade_id=walk.next_id,
            price=_decimal(price_units, walk.decimals),
            quantity=_decimal(qty_units, QTY_DECIMALS),
            is_buyer_maker=draw() < 0.5,
            trade_time=millis,
            event_time=millis,
            received_at=millis,
        )
        walk.next_id += 1
