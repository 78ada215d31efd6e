"""What an exchange is to the rest of the project: one frozen :class:`ExchangeDescriptor` per exchange package.

Everything exchange-specific that other modules need (settings names, symbol spelling, capabilities, adapter,
backfiller, demo symbols) is read from the descriptor, never written out again elsewhere. The descriptor's
capabilities follow freqtrade's ``FtHas``: a typed statement of what the venue offers, not a behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the adapter and backfill modules import this one (through the registry); types only here
    from ingest.backfill import RestClient
    from ingest.exchanges.base import Exchange


class BackfillBy(StrEnum):
    """How the exchange's REST fetches a range of missing trade ids."""

    ID = "id"  # pages addressed by trade id (Binance fromId, Coinbase after)
    TIME = "time"  # pages addressed by time, rows filtered by id (Kraken since)
    RECENT = "recent"  # only the newest trades (Bybit recent-trade): each reconnect catches up from them
    NONE = "none"  # no REST backfill: gaps are counted, never filled


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the exchange offers ingest (in the spirit of freqtrade's ``FtHas``)."""

    #: a public trade stream ingest subscribes to
    trades: bool = True
    #: trade ids are consecutive per symbol, so a jump in them is a gap
    consecutive_ids: bool = False
    #: frames carry a per-connection sequence number, so missed frames are seen even without trade ids
    sequenced: bool = False
    #: how missing ids are fetched over REST
    backfill: BackfillBy = BackfillBy.NONE
    #: how far back REST reaches: None for the exchange's whole history, N for only the newest N trades per symbol
    rest_reach: int | None = None
    #: order books: ``manage.py ingest`` runs the books channel by default (Binance, Coinbase, Kraken; docs/BOOKS.md)
    books: bool = False


@dataclass(frozen=True, slots=True)
class SymbolSpelling:
    """How an exchange spells a symbol: in its subscriptions, and in trade records and Kafka keys (upper case)."""

    #: a symbol as the exchange's subscriptions spell it, once normalised
    pattern: re.Pattern[str]
    #: what to say about a bad one (``{symbol!r}`` is replaced)
    hint: str
    #: between base and quote asset: "" (BTCUSDT), "-" (BTC-USD), "/" (BTC/USD)
    separator: str = ""
    #: subscriptions in lower case (Binance streams); records are upper case whatever this says
    lower_case: bool = False

    def normalise(self, exchange: str, symbols: list[str]) -> list[str]:
        """User input in the exchange's subscription spelling, without repeats; ``ValueError`` names a bad one."""
        out: list[str] = []
        for symbol in symbols:
            name = symbol.strip().lower() if self.lower_case else symbol.strip().upper()
            if not self.pattern.fullmatch(name):
                raise ValueError(f"not a {exchange.capitalize()} {self.hint.format(symbol=symbol)}")
            if name not in out:
                out.append(name)
        return out

    def join(self, base: str, quote: str) -> str:
        """The record spelling of the ``base``/``quote`` market (``BTC`` and ``USD`` -> ``BTC-USD`` on Coinbase)."""
        return f"{base.upper()}{self.separator}{quote.upper()}"

    def record(self, symbol: str) -> str:
        """A subscription spelling as trade records and Kafka keys spell it (``btcusdt`` -> ``BTCUSDT``)."""
        return symbol.upper()


@dataclass(frozen=True, slots=True)
class ExchangeDescriptor:
    """One exchange, as every other module sees it. Its package's ``__init__`` exposes it as ``DESCRIPTOR``."""

    #: the registry key, the records' ``exchange`` and ``--exchange`` (lower case)
    name: str
    #: the Django setting holding the WebSocket base URL, and its default (the real endpoint)
    ws_url_setting: str
    ws_url_default: str
    #: the adapter: connection plans and the frame parser
    adapter: type[Exchange]
    symbols: SymbolSpelling
    capabilities: Capabilities
    #: the symbols the demo and the docs use, in the exchange's spelling
    demo_symbols: tuple[str, ...]
    #: the Django setting holding the REST base URL and its default (None without REST backfill)
    rest_url_setting: str | None = None
    rest_url_default: str | None = None
    #: the REST backfill client (None without REST backfill)
    backfiller: type[RestClient] | None = None
