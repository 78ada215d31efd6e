"""Query-parameter parsing: every failure is a :class:`ParamError` naming the parameter."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime

from analytics.models import INTERVAL_SECONDS
from cryptoproject.timeutil import ms_to_datetime
from dashboard.api.errors import ParamError
from ingest.exchanges import choices_text
from ingest.records import EXCHANGES

#: the ``exchange`` parameter's values as the API docs say them ("binance, coinbase or kraken")
EXCHANGE_CHOICES = choices_text()
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Plausible epoch milliseconds: 2009-01-01 .. 2100-01-01.
_MIN_MS = 1_230_768_000_000
_MAX_MS = 4_102_444_800_000
_PLUS_LOST = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
# ASCII digits only: str.isdigit() and int() also accept "²", "٣" or "1_000", which either crash int() or are
# not what anyone meant.
_INTEGER = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# PostgreSQL's bigint: an id beyond it is no row's (and would fail the query instead of matching nothing).
BIGINT_MAX = 2**63 - 1
# A plain non-negative decimal, bounded so PostgreSQL's numeric(20, 2) comparisons never overflow.
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18}", re.ASCII)


def _value(query: QueryDict, name: str, required: bool) -> str | None:
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        if required:
            raise ParamError(name, f"'{name}' is required.")
        return None
    return raw.strip()


def exchange(query: QueryDict, required: bool = False) -> str | None:
    """``exchange``: one of the supported exchanges (lower case)."""
    raw = _value(query, "exchange", required)
    if raw is None:
        return None
    value = raw.lower()
    if value not in EXCHANGES:
        raise ParamError("exchange", f"unknown exchange {raw!r}; expected one of {', '.join(sorted(EXCHANGES))}.")
    return value


def symbol(query: QueryDict, required: bool = False) -> str | None:
    """``symbol``: the exchange's own symbol, upper-cased (BTCUSDT, BTC-USD, BTC/USD)."""
    raw = _value(query, "symbol", required)
    if raw is None:
        return None
    if len(raw) > 32 or not all(c.isalnum() or c in "-/_." for c in raw):
        raise ParamError("symbol", f"invalid symbol {raw!r}.")
    return raw.upper()


def interval(query: QueryDict) -> str:
    """``interval``: 1m, 5m, 15m, 1h, 4h or 1d (default 1m)."""
    raw = _value(query, "interval", False) or "1m"
    if raw not in INTERVAL_SECONDS:
        raise ParamError("interval", f"unknown interval {raw!r}; expected one of {', '.join(INTERVAL_SECONDS)}.")
    return raw


def limit(query: QueryDict, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """``limit``: an integer in [1, maximum]."""
    raw = _value(query, "limit", False)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ParamError("limit", f"'limit' must be an integer, not {raw[:40]!r}.")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise ParamError("limit", f"'limit' must be between 1 and {maximum}.")
    return value


def identifier(query: QueryDict, name: str) -> int | None:
    """``name``: a row id, ASCII digits in [1, bigint max] (``str.isdigit()`` would take "²" and crash ``int()``)."""
    raw = _value(query, name, False)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw) or not 1 <= int(raw) <= BIGINT_MAX:
        raise ParamError(name, f"'{name}' must be a positive integer id, not {raw[:40]!r}.")
    return int(raw)


def parse_time(name: str, raw: str) -> datetime:
    """An ISO 8601 date/time (naive means UTC) or epoch milliseconds."""
    if len(raw) > 64:
        raise ParamError(name, f"'{name}' is too long for a date/time.")
    if _INTEGER.fullmatch(raw):
        ms = int(raw)
        if not _MIN_MS <= ms < _MAX_MS:
            raise ParamError(name, f"'{name}' epoch milliseconds {raw} is out of range (2009..2100).")
        return ms_to_datetime(ms)
    try:
        # An unencoded "+00:00" offset arrives as " 00:00" in a query string.
        parsed = parse_datetime(_PLUS_LOST.sub(r"\1+\2", raw))
        if parsed is None:
            day = parse_date(raw)
            if day is not None:
                parsed = datetime(day.year, day.month, day.day)
    except (ValueError, OverflowError) as exc:
        raise ParamError(name, f"'{name}' is not a valid date/time: {exc}.") from exc
    if parsed is None:
        raise ParamError(name, f"'{name}' must be ISO 8601 (2024-08-09T00:00:00Z) or epoch milliseconds, not {raw!r}.")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def time_range(query: QueryDict) -> tuple[datetime | None, datetime | None]:
    """``start`` and ``end`` (both optional, inclusive); ``start`` after ``end`` is an error."""
    start_raw = _value(query, "start", False)
    end_raw = _value(query, "end", False)
    start = parse_time("start", start_raw) if start_raw is not None else None
    end = parse_time("end", end_raw) if end_raw is not None else None
    if start is not None and end is not None and start > end:
        raise ParamError("start", "'start' must not be after 'end'.")
    return start, end


def decimal(query: QueryDict, name: str) -> Decimal | None:
    """A non-negative decimal (e.g. ``min_notional``)."""
    raw = _value(query, name, False)
    if raw is None:
        return None
    if raw.startswith("-") and _DECIMAL.fullmatch(raw[1:]):
        raise ParamError(name, f"'{name}' must be a finite number >= 0.")
    if not _DECIMAL.fullmatch(raw):
        raise ParamError(name, f"'{name}' must be a plain decimal number (e.g. 250000.50), not {raw[:40]!r}.")
    return Decimal(raw)
