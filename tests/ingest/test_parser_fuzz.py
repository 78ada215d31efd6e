"""Property tests: valid generated trades round-trip exactly (that no input raises out of a parser is the
conformance suite's, tests/conformance/test_frames.py)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.exchanges.binance.adapter import parse_frame as binance_parse
from ingest.exchanges.coinbase.adapter import CoinbaseParser
from ingest.exchanges.kraken.adapter import parse_frame as kraken_parse

pytestmark = pytest.mark.unit

# The ingest clock: after every generated trade time (a trade later than received_at + 60 s is refused).
NOW = 4_100_000_000_000
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

decimals = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("10000000"), places=8).map(
    lambda d: format(d, "f")
)
millis = st.integers(min_value=1_262_304_000_000, max_value=4_000_000_000_000)
symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=12)
trade_ids = st.integers(min_value=0, max_value=2**63 - 1)


@FUZZ
@given(symbols, trade_ids, decimals, decimals, st.booleans(), millis, millis, st.booleans())
def test_binance_round_trip(
    symbol: str, trade_id: int, price: str, qty: str, maker: bool, trade_ms: int, event_ms: int, combined: bool
) -> None:
    event = {"e": "trade", "E": event_ms, "s": symbol, "t": trade_id, "p": price, "q": qty, "T": trade_ms, "m": maker}
    frame = {"stream": f"{symbol.lower()}@trade", "data": event} if combined else event
    (trade,) = binance_parse(orjson.dumps(frame), NOW).trades
    assert (trade.symbol, trade.trade_id, trade.price, trade.quantity) == (symbol, trade_id, price, qty)
    assert (trade.is_buyer_maker, trade.trade_time, trade.event_time) == (maker, trade_ms, event_ms)


def _rfc3339(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}123Z"


@FUZZ
@given(symbols, symbols, trade_ids, decimals, decimals, st.booleans(), millis)
def test_coinbase_round_trip(base: str, quote: str, trade_id: int, price: str, size: str, sell: bool, ms: int) -> None:
    product = f"{base}-{quote}"
    trade = {
        "product_id": product,
        "trade_id": str(trade_id),
        "price": price,
        "size": size,
        "time": _rfc3339(ms),
        "side": "SELL" if sell else "BUY",
    }
    raw = orjson.dumps({"channel": "market_trades", "timestamp": _rfc3339(ms), "events": [{"trades": [trade]}]})
    (record,) = CoinbaseParser().parse(raw, NOW).trades
    assert (record.symbol, record.trade_id, record.price, record.quantity) == (product, trade_id, price, size)
    assert (record.is_buyer_maker, record.trade_time) == (sell, ms)


@FUZZ
@given(symbols, symbols, trade_ids, decimals, decimals, st.booleans(), millis)
def test_kraken_round_trip(base: str, quote: str, trade_id: int, price: str, qty: str, sell: bool, ms: int) -> None:
    pair = f"{base}/{quote}"
    # numbers written as the exchange would: unquoted, exactly this text
    raw = (
        f'{{"channel":"trade","type":"update","data":[{{"symbol":"{pair}","side":"{"sell" if sell else "buy"}",'
        f'"price":{price},"qty":{qty},"ord_type":"limit","trade_id":{trade_id},"timestamp":"{_rfc3339(ms)}"}}]}}'
    )
    (record,) = kraken_parse(raw, NOW).trades
    assert (record.symbol, record.trade_id, record.price, record.quantity) == (pair, trade_id, price, qty)
    assert (record.is_buyer_maker, record.trade_time) == (sell, ms)
