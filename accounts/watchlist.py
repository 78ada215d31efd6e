"""Watchlists: a user's ordered markets, from any exchange the platform ingests.

Markets are validated by :func:`analytics.groups.parse_market` (the exchanges of ``ingest.records.EXCHANGES``, the
symbol charset), the same rule the pages and sockets use. The size is bounded by ``ACCOUNTS_MAX_WATCHLIST``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import WatchlistItem
from accounts.quotas import check_quota
from analytics.groups import InvalidMarketError, parse_market

Market = tuple[str, str]


class WatchlistError(ValueError):
    """A bad watchlist request; ``param`` names the field (``items[2].symbol``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def markets(user: Any) -> list[Market]:
    """The user's (exchange, symbol) pairs, in order."""
    rows = WatchlistItem.objects.filter(owner=user.pk).order_by("position", "id")
    return [(r.exchange, r.symbol) for r in rows]


def items(user: Any) -> list[dict[str, Any]]:
    """The user's watchlist as the API shows it."""
    rows = WatchlistItem.objects.filter(owner=user.pk).order_by("position", "id")
    return [{"id": r.pk, "exchange": r.exchange, "symbol": r.symbol, "position": i} for i, r in enumerate(rows)]


def parse_market_field(param: str, exchange: Any, symbol: Any) -> Market:
    """One market, validated; a :class:`WatchlistError` names ``<param>.exchange`` or ``<param>.symbol``."""
    if not isinstance(exchange, str) or not exchange.strip():
        raise WatchlistError(f"{param}exchange", "'exchange' is required.")
    if not isinstance(symbol, str) or not symbol.strip():
        raise WatchlistError(f"{param}symbol", "'symbol' is required.")
    try:
        parse_market(exchange, "X")
    except InvalidMarketError as exc:
        raise WatchlistError(f"{param}exchange", str(exc)) from None
    try:
        return parse_market(exchange, symbol)
    except InvalidMarketError as exc:
        raise WatchlistError(f"{param}symbol", str(exc)) from None


def parse_items(body: Any) -> list[Market]:
    """The ordered markets of a PUT body ``{"items": [{"exchange": "binance", "symbol": "BTCUSDT"}, ...]}``."""
    if not isinstance(body, dict):
        raise WatchlistError("body", "the body must be a JSON object with 'items'.")
    raw = body.get("items")
    if not isinstance(raw, list):
        raise WatchlistError("items", "'items' must be a list of {exchange, symbol} objects.")
    out: list[Market] = []
    seen: set[Market] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise WatchlistError(f"items[{i}]", f"'items[{i}]' must be an object with 'exchange' and 'symbol'.")
        market = parse_market_field(f"items[{i}].", entry.get("exchange"), entry.get("symbol"))
        if market in seen:
            raise WatchlistError(f"items[{i}]", f"'items[{i}]' repeats {market[0]}:{market[1]}.")
        seen.add(market)
        out.append(market)
    return out


def _lock_user(user: Any) -> None:
    # Serialises a user's concurrent watchlist writes (the quota count and the positions stay consistent).
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()


def replace(user: Any, wanted: list[Market]) -> None:
    """Make ``wanted`` the user's watchlist, in that order (one DELETE, one INSERT)."""
    check_quota(user, "watchlist markets", 0, settings.ACCOUNTS_MAX_WATCHLIST, adding=len(wanted), param="items")
    with transaction.atomic():
        _lock_user(user)
        WatchlistItem.objects.filter(owner=user.pk).delete()
        WatchlistItem.objects.bulk_create(
            WatchlistItem(owner_id=user.pk, exchange=e, symbol=s, position=i) for i, (e, s) in enumerate(wanted)
        )


def add(user: Any, exchange: Any, symbol: Any) -> Market:
    """Append one market (validated); a market already there stays where it is."""
    market = parse_market_field("", exchange, symbol)
    with transaction.atomic():
        _lock_user(user)
        current = markets(user)
        if market in current:
            return market
        check_quota(user, "watchlist markets", len(current), settings.ACCOUNTS_MAX_WATCHLIST, param="symbol")
        WatchlistItem.objects.create(owner=user, exchange=market[0], symbol=market[1], position=len(current))
    return market


def remove(user: Any, item_id: int) -> bool:
    """Remove the user's item ``item_id``; False when the user has none such."""
    deleted, _ = WatchlistItem.objects.filter(owner=user.pk, pk=item_id).delete()
    return deleted > 0


def move(user: Any, item_id: int, offset: int) -> bool:
    """Move the user's item ``item_id`` ``offset`` places (-1 up, +1 down); False when there is no such item."""
    with transaction.atomic():
        _lock_user(user)
        rows = list(WatchlistItem.objects.filter(owner=user.pk).order_by("position", "id"))
        index = next((i for i, r in enumerate(rows) if r.pk == item_id), None)
        if index is None:
            return False
        target = min(max(index + offset, 0), len(rows) - 1)
        rows.insert(target, rows.pop(index))
        for position, row in enumerate(rows):
            row.position = position
        WatchlistItem.objects.bulk_update(rows, ["position"])
    return True
