"""The channels ``manage.py ingest`` runs besides trades, plugged in by the apps that own them.

Ingest sits below those apps (``tests/foundation/test_architecture.py``), so it never imports them: an app registers
a factory here from its ``AppConfig.ready()`` (the books app registers ``books``, :mod:`books.stream`), and the
command asks for it by name. A factory gets what the process already has (URLs, symbols, the producer, the metrics)
and returns the extra connections with their frame handlers, and a tick the runner calls every half second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.client import FrameHandler
from ingest.exchanges.base import ConnectionPlan
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer


@dataclass(frozen=True)
class ChannelContext:
    """What a channel factory is given: one exchange's endpoints and symbols, and the process's producer and
    metrics."""

    exchange: str
    ws_url: str
    rest_url: str | None
    #: the symbols in the exchange's subscription spelling (``btcusdt``) and as records spell them (``BTCUSDT``)
    symbols: tuple[str, ...]
    record_symbols: tuple[str, ...]
    producer: TradeProducer
    metrics: IngestMetrics


@dataclass(frozen=True)
class ChannelRun:
    """A channel's connections (each with its frame handler) and its periodic tick."""

    connections: Sequence[tuple[ConnectionPlan, FrameHandler]] = field(default_factory=tuple)
    tick: Callable[[], None] | None = None


ChannelFactory = Callable[[ChannelContext], ChannelRun]

_FACTORIES: dict[str, ChannelFactory] = {}


def register(name: str, factory: ChannelFactory) -> None:
    """Make channel ``name`` available to ``manage.py ingest --channels`` (called from an app's ``ready()``)."""
    _FACTORIES[name] = factory


def channel_factory(name: str) -> ChannelFactory | None:
    """The factory registered for ``name``, or None when no installed app provides it."""
    return _FACTORIES.get(name)
