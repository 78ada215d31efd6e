"""The exchange registry: one line per exchange naming its package, whose ``__init__`` exposes ``DESCRIPTOR``.

Every list of exchanges in the project (records, runner, simulator, API, forms, commands) derives from here.
Packages are imported on first use by name, as cryptofeed's ``EXCHANGE_MAP`` lists its exchanges: the trade
record (imported by every adapter) reads :func:`names` without importing any adapter.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ingest.exchanges.descriptor import ExchangeDescriptor

if TYPE_CHECKING:
    from ingest.exchanges.base import Exchange

#: name -> the package holding its adapter, backfill and ``DESCRIPTOR``. Adding an exchange adds one line here.
EXCHANGE_MAP: dict[str, str] = {
    "binance": "ingest.exchanges.binance",
    "coinbase": "ingest.exchanges.coinbase",
    "kraken": "ingest.exchanges.kraken",
    "okx": "ingest.exchanges.okx",
    "bybit": "ingest.exchanges.bybit",
}

_loaded: dict[str, ExchangeDescriptor] = {}


class UnknownExchangeError(KeyError, ValueError):
    """An exchange name the registry does not hold; the message names the known ones."""

    def __init__(self, name: object) -> None:
        super().__init__(f"unknown exchange {name!r}: choose one of {', '.join(names())}")

    def __str__(self) -> str:
        """The message itself (a ``KeyError`` would quote it)."""
        return str(self.args[0])


def names() -> tuple[str, ...]:
    """The registered exchanges' names, in registry order (no package is imported)."""
    return tuple(EXCHANGE_MAP)


def choices_text() -> str:
    """The names as a sentence says them: ``binance, coinbase or kraken``."""
    *rest, last = names()
    return f"{', '.join(rest)} or {last}" if rest else last


def get(name: str) -> ExchangeDescriptor:
    """The descriptor of ``name``; :class:`UnknownExchangeError` names the known ones."""
    if not isinstance(name, str) or name not in EXCHANGE_MAP:
        raise UnknownExchangeError(name)
    descriptor = _loaded.get(name)
    if descriptor is not None:
        return descriptor
    descriptor = importlib.import_module(EXCHANGE_MAP[name]).DESCRIPTOR
    if not isinstance(descriptor, ExchangeDescriptor) or descriptor.name != name:
        raise TypeError(f"{EXCHANGE_MAP[name]}.DESCRIPTOR is not the ExchangeDescriptor of {name!r}")
    _loaded[name] = descriptor
    return descriptor


def descriptors() -> tuple[ExchangeDescriptor, ...]:
    """Every registered exchange's descriptor, in registry order."""
    return tuple(get(name) for name in names())


class _Registry(Mapping[str, ExchangeDescriptor]):
    """The registry as a read-only mapping, name -> descriptor, loading packages on first access."""

    def __getitem__(self, name: str) -> ExchangeDescriptor:
        return get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(EXCHANGE_MAP)

    def __len__(self) -> int:
        return len(EXCHANGE_MAP)


class _Adapters(Mapping[str, "type[Exchange]"]):
    """Name -> adapter class, derived from the registry (the former hand-written ``ADAPTERS`` table)."""

    def __getitem__(self, name: str) -> type[Exchange]:
        return get(name).adapter

    def __iter__(self) -> Iterator[str]:
        return iter(EXCHANGE_MAP)

    def __len__(self) -> int:
        return len(EXCHANGE_MAP)


REGISTRY: Mapping[str, ExchangeDescriptor] = _Registry()
ADAPTERS: Mapping[str, type[Exchange]] = _Adapters()

__all__ = [
    "ADAPTERS",
    "EXCHANGE_MAP",
    "REGISTRY",
    "ExchangeDescriptor",
    "UnknownExchangeError",
    "choices_text",
    "descriptors",
    "get",
    "names",
]
