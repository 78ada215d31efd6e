"""The exchange registry: one package per exchange, each with a valid descriptor, and unknown names refused."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from books.stream import BOOK_EXCHANGES
from ingest.backfill import RestClient
from ingest.exchanges import (
    ADAPTERS,
    EXCHANGE_MAP,
    REGISTRY,
    UnknownExchangeError,
    choices_text,
    descriptors,
    get,
    names,
)
from ingest.exchanges.base import Exchange
from ingest.exchanges.descriptor import BackfillBy, ExchangeDescriptor, SymbolSpelling
from ingest.runner import SettingsError, load_config
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

SETTINGS_SOURCE = (ROOT / "cryptoproject" / "settings.py").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
KNOWN = ", ".join(names())  # "binance, coinbase, kraken"


def test_the_registry_lists_the_exchanges_in_one_place() -> None:
    assert names()[:3] == ("binance", "coinbase", "kraken")  # a new exchange adds a line, after these
    assert list(REGISTRY) == list(names()) == list(ADAPTERS)
    assert len(REGISTRY) == len(EXCHANGE_MAP)
    assert choices_text() == f"{', '.join(names()[:-1])} or {names()[-1]}"
    assert choices_text().startswith("binance, coinbase")
    assert [d.name for d in descriptors()] == list(names())


@pytest.mark.parametrize("bad", ["bitmex", "Binance", "", "binance ", None, ["binance"]])
def test_an_unknown_exchange_is_an_error_naming_the_known_ones(bad: object) -> None:
    with pytest.raises(UnknownExchangeError) as caught:
        get(bad)  # type: ignore[arg-type]
    assert str(caught.value) == f"unknown exchange {bad!r}: choose one of {KNOWN}"
    # Both a lookup error (mappings) and a value error (option parsing) catch it.
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)
    assert bad not in REGISTRY if isinstance(bad, str) else True
    with pytest.raises(UnknownExchangeError, match=f"choose one of {KNOWN}$"):
        ADAPTERS["bitmex"]


def test_ingest_settings_refuse_an_unknown_exchange_naming_the_known_ones() -> None:
    with pytest.raises(SettingsError, match=f"^unknown exchange 'bitmex': choose one of {KNOWN}$"):
        load_config("bitmex")


@pytest.mark.parametrize("name", names())
def test_each_package_exposes_its_descriptor(name: str) -> None:
    descriptor = get(name)
    assert isinstance(descriptor, ExchangeDescriptor)
    assert descriptor.name == name == name.lower()
    assert EXCHANGE_MAP[name] == f"ingest.exchanges.{name}"
    assert REGISTRY[name] is descriptor
    with pytest.raises(AttributeError):  # frozen
        descriptor.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", names())
def test_each_descriptor_names_settings_that_exist_with_its_defaults(name: str) -> None:
    descriptor = get(name)
    pairs = [(descriptor.ws_url_setting, descriptor.ws_url_default, ("ws", "wss"))]
    if descriptor.rest_url_setting is not None:
        assert descriptor.rest_url_default is not None
        pairs.append((descriptor.rest_url_setting, descriptor.rest_url_default, ("http", "https")))
    for setting, default, schemes in pairs:
        assert setting == setting.upper(), setting
        assert setting.startswith(f"{name.upper()}_"), setting
        assert isinstance(getattr(settings, setting), str), setting
        # settings.py reads it from the environment with the descriptor's default; .env.example shows it.
        declared = re.search(rf'^{setting}: str = env\.str\("{setting}", default="([^"]*)"\)$', SETTINGS_SOURCE, re.M)
        assert declared is not None, setting
        assert declared.group(1) == default, setting
        assert re.search(rf"^{setting}={re.escape(default)}$", ENV_EXAMPLE, re.M), setting
        assert default.split("://", 1)[0] in schemes, setting


@pytest.mark.parametrize("name", names())
def test_each_descriptor_agrees_with_its_adapter_and_backfiller(name: str) -> None:
    descriptor = get(name)
    adapter = descriptor.adapter
    capabilities = descriptor.capabilities
    assert issubclass(adapter, Exchange)
    assert adapter.name == name
    assert ADAPTERS[name] is adapter
    assert isinstance(descriptor.symbols, SymbolSpelling)
    assert adapter.spelling is descriptor.symbols
    assert capabilities.trades
    # books=True exactly for the exchanges whose book feed the books channel runs (books/stream.py)
    assert capabilities.books == (name in BOOK_EXCHANGES)
    assert capabilities.consecutive_ids == adapter.consecutive_ids
    backfills = capabilities.backfill is not BackfillBy.NONE
    assert backfills == adapter.supports_backfill == (descriptor.backfiller is not None)
    assert backfills == (descriptor.rest_url_setting is not None)
    if descriptor.backfiller is not None:
        assert issubclass(descriptor.backfiller, RestClient)
        assert descriptor.backfiller.pages is not RestClient.pages  # it implements the paging
    assert capabilities.rest_reach is None or capabilities.rest_reach > 0


@pytest.mark.parametrize("name", names())
def test_each_descriptors_demo_symbols_are_in_its_own_spelling(name: str) -> None:
    descriptor = get(name)
    assert descriptor.demo_symbols
    # Normalising the demo symbols changes nothing: they are already the exchange's subscription spelling.
    assert descriptor.symbols.normalise(name, list(descriptor.demo_symbols)) == list(descriptor.demo_symbols)
    assert descriptor.adapter("ws://127.0.0.1:1").normalise_symbols(list(descriptor.demo_symbols)) == list(
        descriptor.demo_symbols
    )


@pytest.mark.parametrize(
    ("name", "joined", "record"),
    [("binance", "BTCUSDT", "BTCUSDT"), ("coinbase", "BTC-USDT", "BTC-USDT"), ("kraken", "BTC/USDT", "BTC/USDT")],
)
def test_the_symbol_spelling_joins_and_records(name: str, joined: str, record: str) -> None:
    spelling = get(name).symbols
    assert spelling.join("btc", "usdt") == joined
    subscribed = spelling.normalise(name, [joined])[0]
    assert spelling.record(subscribed) == record
    with pytest.raises(ValueError, match=f"^not a {name.capitalize()} "):
        spelling.normalise(name, ["not a symbol!"])
