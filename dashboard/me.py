"""My dashboard (``/me/``): the signed-in user's watchlist as live tiles, and their alerts and alert rules.

The tiles are the overview's (same template markup, same script over ``ws/overview/``), limited to the watchlist
and kept in its order. ``recent_alerts`` and ``rules`` are empty until the alert rules exist: the template already
loops over them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse

from accounts import watchlist
from analytics.models import SymbolStats
from dashboard.views import _page


def tiles(markets: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One tile per market, in the watchlist's order: its stats row, or None before the market has any."""
    if not markets:
        return []
    wanted = set(markets)
    exchanges = {e for e, _ in markets}
    symbols = {s for _, s in markets}
    # One query for the whole list (candidates by exchange and symbol, then the exact pairs).
    found = {
        (r.exchange, r.symbol): r
        for r in SymbolStats.objects.filter(exchange__in=exchanges, symbol__in=symbols)
        if (r.exchange, r.symbol) in wanted
    }
    return [{"exchange": e, "symbol": s, "stats": found.get((e, s))} for e, s in markets]


@login_required
def me(request: HttpRequest) -> HttpResponse:
    """The user's watchlist tiles, recent alerts and alert rules."""
    markets = watchlist.markets(request.user)
    config = {"ws": "/ws/overview/", "markets": [f"{e}:{s}" for e, s in markets]}
    return _page(
        request,
        "dashboard/me.html",
        "me",
        config,
        tiles=tiles(markets),
        recent_alerts=[],
        rules=[],
    )
