"""Validating an alert rule as a client describes it (the API, the pages): every error names its parameter.

:func:`clean_rule` takes the fields of ``POST /api/v1/alert-rules`` (or a rule merged with a ``PATCH``) and returns
them normalised (exchange lower case, symbol upper case, decimals as plain strings), or raises :class:`RuleError`
naming the parameter (``params.level``, ``channels``...). Each kind's parameters and their meaning: docs/ALERTS.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from alerts.models import AlertKind
from analytics.models import INTERVAL_SECONDS
from ingest.records import EXCHANGES
from notifications.models import ChannelKind

DIRECTIONS = ("up", "down", "both")
INDICATORS = ("rsi", "macd", "sma", "ema", "bollinger")
MAX_COOLDOWN_S = 7 * 86_400
MAX_WINDOW_S = 86_400
MAX_SPIKE_N = 500
# A plain non-negative decimal, bounded so PostgreSQL's numeric columns never overflow (as dashboard.api.params).
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18}", re.ASCII)
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/_.]{0,31}", re.ASCII)


class RuleError(ValueError):
    """An invalid rule: ``param`` names what is wrong (``kind``, ``params.level``, ``channels``...)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class CleanRule:
    """A valid rule's fields, normalised."""

    kind: str
    exchange: str
    symbol: str
    params: dict[str, Any]
    channels: list[str]
    cooldown_s: int


def _decimal(name: str, raw: Any, positive: bool = True, maximum: Decimal | None = None) -> str:
    """A decimal given as a string (or an integer): floats are refused, they are not exact."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise RuleError(name, f"'{name}' must be a decimal string such as \"61000.5\".")
    text = str(raw).strip()
    if not _DECIMAL.fullmatch(text):
        raise RuleError(name, f"'{name}' must be a plain non-negative decimal, not {text[:40]!r}.")
    value = Decimal(text)
    if positive and value <= 0:
        raise RuleError(name, f"'{name}' must be greater than 0.")
    if maximum is not None and value > maximum:
        raise RuleError(name, f"'{name}' must be at most {maximum}.")
    return f"{value.normalize():f}" if value != 0 else "0"


def _integer(name: str, raw: Any, least: int, most: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise RuleError(name, f"'{name}' must be an integer.")
    try:
        value = int(raw) if isinstance(raw, int) else int(raw.strip(), 10)
    except ValueError as exc:
        raise RuleError(name, f"'{name}' must be an integer.") from exc
    if not least <= value <= most:
        raise RuleError(name, f"'{name}' must be between {least} and {most}.")
    return value


def _choice(name: str, raw: Any, choices: tuple[str, ...] | list[str], default: str | None = None) -> str:
    if raw is None and default is not None:
        return default
    if not isinstance(raw, str) or raw not in choices:
        raise RuleError(name, f"'{name}' must be one of {', '.join(choices)}.")
    return raw


def _required(params: Mapping[str, Any], key: str) -> Any:
    if params.get(key) is None:
        raise RuleError(f"params.{key}", f"'params.{key}' is required for this kind.")
    return params[key]


def _price_cross(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "level": _decimal("params.level", _required(p, "level")),
        "direction": _choice("params.direction", p.get("direction"), DIRECTIONS, "both"),
    }


def _pct_move(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pct": _decimal("params.pct", _required(p, "pct"), maximum=Decimal(1000)),
        "window_s": _integer("params.window_s", _required(p, "window_s"), 1, MAX_WINDOW_S),
        "direction": _choice("params.direction", p.get("direction"), DIRECTIONS, "both"),
    }


def _indicator(p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "interval": _choice("params.interval", _required(p, "interval"), list(INTERVAL_SECONDS)),
        "indicator": _choice("params.indicator", _required(p, "indicator"), INDICATORS),
        "direction": _choice("params.direction", p.get("direction"), DIRECTIONS, "both"),
    }
    if out["indicator"] == "rsi":
        out["level"] = _decimal("params.level", _required(p, "level"), maximum=Decimal(100))
    elif out["indicator"] in ("sma", "ema"):
        periods = [str(period) for period in settings.INDICATOR_MA_PERIODS]
        period = _required(p, "period")
        if str(period) not in periods or isinstance(period, bool):
            raise RuleError("params.period", f"'params.period' must be one of the stored periods {', '.join(periods)}.")
        out["period"] = int(period)
    return out


def _volume_spike(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "interval": _choice("params.interval", _required(p, "interval"), list(INTERVAL_SECONDS)),
        "factor": _decimal("params.factor", _required(p, "factor"), maximum=Decimal(10_000)),
        "n": _integer("params.n", _required(p, "n"), 1, MAX_SPIKE_N),
    }


def _whale(p: Mapping[str, Any]) -> dict[str, Any]:
    if p.get("min_notional") is None:
        return {}
    return {"min_notional": _decimal("params.min_notional", p["min_notional"], positive=False)}


_PARAMS = {
    AlertKind.PRICE_CROSS: (_price_cross, {"level", "direction"}),
    AlertKind.PCT_MOVE: (_pct_move, {"pct", "window_s", "direction"}),
    AlertKind.INDICATOR: (_indicator, {"interval", "indicator", "direction", "level", "period"}),
    AlertKind.VOLUME_SPIKE: (_volume_spike, {"interval", "factor", "n"}),
    AlertKind.WHALE: (_whale, {"min_notional"}),
}


def clean_params(kind: str, params: Any) -> dict[str, Any]:
    """The kind's parameters, validated and normalised; unknown keys are refused (a typo must not pass)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RuleError("params", "'params' must be a JSON object.")
    clean, known = _PARAMS[AlertKind(kind)]
    for key in params:
        if key not in known:
            raise RuleError(f"params.{key}", f"unknown parameter {str(key)[:40]!r} for kind {kind}.")
    return clean(params)


def clean_market(kind: str, exchange: Any, symbol: Any) -> tuple[str, str]:
    """Exchange (a configured one, lower case) and symbol (upper case); blank only for whale rules (every one)."""
    exchange = "" if exchange is None else exchange
    symbol = "" if symbol is None else symbol
    if not isinstance(exchange, str):
        raise RuleError("exchange", "'exchange' must be a string.")
    if not isinstance(symbol, str):
        raise RuleError("symbol", "'symbol' must be a string.")
    exchange, symbol = exchange.strip().lower(), symbol.strip().upper()
    blank_ok = kind == AlertKind.WHALE
    if not exchange and not blank_ok:
        raise RuleError("exchange", "'exchange' is required for this kind.")
    if exchange and exchange not in EXCHANGES:
        raise RuleError("exchange", f"unknown exchange; expected one of {', '.join(sorted(EXCHANGES))}.")
    if not symbol and not blank_ok:
        raise RuleError("symbol", "'symbol' is required for this kind.")
    if symbol and not _SYMBOL.fullmatch(symbol):
        raise RuleError("symbol", f"invalid symbol {symbol[:40]!r}.")
    return exchange, symbol


def clean_channels(raw: Any) -> list[str]:
    """A non-empty list of distinct channel names (``in_app``, ``email``, ``sms``, ``telegram``, ``webhook``)."""
    names = list(ChannelKind.values)
    if not isinstance(raw, list) or not raw:
        raise RuleError("channels", f"'channels' must be a non-empty list of {', '.join(names)}.")
    out: list[str] = []
    for name in raw:
        if not isinstance(name, str) or name not in names:
            raise RuleError("channels", f"unknown channel {str(name)[:40]!r}; expected {', '.join(names)}.")
        if name not in out:
            out.append(name)
    return out


def clean_rule(data: Mapping[str, Any]) -> CleanRule:
    """Validate a whole rule (``kind``, ``exchange``, ``symbol``, ``params``, ``channels``, ``cooldown_s``)."""
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in AlertKind.values:
        raise RuleError("kind", f"'kind' must be one of {', '.join(AlertKind.values)}.")
    exchange, symbol = clean_market(kind, data.get("exchange"), data.get("symbol"))
    params = clean_params(kind, data.get("params"))
    channels = clean_channels(data.get("channels"))
    cooldown = data.get("cooldown_s")
    cooldown_s = 0 if cooldown is None else _integer("cooldown_s", cooldown, 0, MAX_COOLDOWN_S)
    return CleanRule(kind, exchange, symbol, params, channels, cooldown_s)
