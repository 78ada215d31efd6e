"""Pure unit tests: group names and the URL market validation shared by pages and consumers."""

from __future__ import annotations

import pytest

from analytics.groups import InvalidMarketError, market_group, parse_market

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("exchange", "symbol", "expected"),
    [
        ("binance", "BTCUSDT", ("binance", "BTCUSDT")),
        ("Binance", "btcusdt", ("binance", "BTCUSDT")),
        ("coinbase", "BTC-USD", ("coinbase", "BTC-USD")),
        ("kraken", "btc/usd", ("kraken", "BTC/USD")),
        ("kraken", " XBT/EUR ", ("kraken", "XBT/EUR")),
    ],
)
def test_parse_market_normalises(exchange: str, symbol: str, expected: tuple[str, str]) -> None:
    assert parse_market(exchange, symbol) == expected


@pytest.mark.parametrize(
    ("exchange", "symbol", "fragment"),
    [
        ("nasdaq", "BTCUSDT", "unknown exchange"),
        ("", "BTCUSDT", "unknown exchange"),
        ("binance", "", "invalid symbol"),
        ("binance", "BTC USDT", "invalid symbol"),
        ("binance", "BTC--USD", "invalid symbol"),
        ("binance", "/BTC", "invalid symbol"),
        ("binance", "BTC/", "invalid symbol"),
        ("binance", "<script>", "invalid symbol"),
        ("binance", "A" * 33, "invalid symbol"),
    ],
)
def test_parse_market_refuses(exchange: str, symbol: str, fragment: str) -> None:
    with pytest.raises(InvalidMarketError, match=fragment):
        parse_market(exchange, symbol)


def test_group_names_use_the_safe_charset() -> None:
    assert market_group("binance", "BTCUSDT") == "market.binance.btcusdt"
    assert market_group("kraken", "BTC/USD") == "market.kraken.btc-usd"
    assert market_group("coinbase", "BTC-USD") == "market.coinbase.btc-usd"
