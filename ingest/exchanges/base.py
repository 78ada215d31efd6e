"""What every exchange adapter provides: a parse result type, control events and the adapter interface."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.exchanges.descriptor import SymbolSpelling
from ingest.gaps import TradeIdContinuity
from ingest.records import TradeRecord

# Control event kinds the runner acts on.
ACK = "ack"
ERROR = "error"
SHUTDOWN = "shutdown"  # the server announced a disconnect: reconnect now
SUBSCRIPTIONS = "subscriptions"
HEARTBEAT = "heartbeat"
STATUS = "status"
SEQUENCE_GAP = "sequence_gap"  # frames were missed on this connection (Coinbase sequence_num)


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A non-trade frame worth knowing about (acks, errors, heartbeats, shutdown notices, sequence gaps)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BadInput:
    """A refused frame or trade: the raw text and the reason (it goes to the dead-letter topic)."""

    reason: str
    raw: str


@dataclass(slots=True)
class ParseResult:
    """Everything one frame held: valid trades in exchange order, refused inputs and control events."""

    trades: list[TradeRecord] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    events: list[ControlEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """One WebSocket connection: its URL, the symbols it carries and the messages to send after connecting."""

    url: str
    symbols: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    #: a text message the exchange wants after ``keepalive_s`` seconds without a frame (OKX: ``ping``), or None
    keepalive: str | None = None
    keepalive_s: float = 25.0


class FrameParser(ABC):
    """Turns raw frames into a :class:`ParseResult`. Never raises, whatever the input."""

    @abstractmethod
    def parse(self, raw: str | bytes, received_at: int) -> ParseResult:
        """Parse one frame received at ``received_at`` (epoch ms)."""

    def connection_reset(self) -> None:  # noqa: B027 - optional hook, most parsers keep no per-connection state
        """A new connection starts (per-connection sequence numbers restart)."""


class StatelessParser(FrameParser):
    """A parser for an exchange whose frames stand alone: it delegates to that exchange's ``parse_frame``."""

    def __init__(self, parse_frame: Callable[[str | bytes, int], ParseResult]) -> None:
        self._parse_frame = parse_frame

    def parse(self, raw: str | bytes, received_at: int) -> ParseResult:
        """Parse one frame."""
        return self._parse_frame(raw, received_at)


class Exchange(ABC):
    """An exchange adapter: symbol rules, connection plans and the frame parser."""

    name: str
    #: trade ids are consecutive per symbol, so a jump is a gap
    consecutive_ids: bool = False
    #: missing ranges can be fetched by id over REST
    supports_backfill: bool = False

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url.rstrip("/")

    #: how this exchange spells a symbol (also its descriptor's ``symbols``)
    spelling: SymbolSpelling

    def normalise_symbols(self, symbols: list[str]) -> list[str]:
        """The symbols as this exchange spells them, without repeats; ``ValueError`` names a bad one."""
        return self.spelling.normalise(self.name, symbols)

    @abstractmethod
    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """The connections needed for ``symbols`` (more than one when the per-connection limit is exceeded)."""

    @abstractmethod
    def parser(self) -> FrameParser:
        """A parser; its state (if any) lives as long as the ingest process, across reconnects."""

    def continuity(self) -> TradeIdContinuity | None:
        """The per-symbol id check ingest runs beside :meth:`parser` (None without consecutive ids: no gap
        detection). An exchange whose trades can stand for a run of ids (OKX's aggregated trades) returns one that
        knows it."""
        return TradeIdContinuity() if self.consecutive_ids else None


def json_object(
    raw: str | bytes, result: ParseResult, loads: Callable[[str | bytes], Any] = orjson.loads
) -> dict[str, Any] | None:
    """The frame's JSON object; None, with the reason added to ``result.bad``, when it is malformed JSON or not an
    object (every exchange's parser starts this way)."""
    try:
        message = loads(raw)
    except (ValueError, RecursionError) as exc:  # orjson's and json's decode errors are ValueErrors
        result.bad.append(BadInput(f"malformed JSON: {str(exc)[:200]}", to_text(raw)))
        return None
    if not isinstance(message, dict):
        result.bad.append(BadInput("message is not a JSON object", to_text(raw)))
        return None
    return message


def to_text(raw: str | bytes) -> str:
    """The frame as text for a dead letter (bytes that are not UTF-8 are replaced, never lost silently)."""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|z|[+-]\d{2}:?\d{2})")


def rfc3339_ms(value: Any) -> int:
    """Epoch milliseconds of an RFC 3339 time (any fraction length, truncated); ``ValueError`` if malformed."""
    if not isinstance(value, str):
        raise ValueError(f"time must be an RFC 3339 string, got {type(value).__name__}")
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"time is not RFC 3339: {value[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) <= 23 and int(minute) <= 59):
        raise ValueError(f"time is out of range: {value[:40]!r}")
    if int(second) > 60:
        raise ValueError(f"time is out of range: {value[:40]!r}")
    seconds = timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    millis = int((fraction or "0").ljust(3, "0")[:3])
    return seconds * 1000 + millis
