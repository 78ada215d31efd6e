"""My dashboard (``/me/``): the signed-in user's watchlist as live tiles, and their alerts and alert rules.

The tiles are the overview's (same template markup, same script over ``ws/overview/``), limited to the watchlist
and kept in its order. Below them the user's newest alerts (:data:`RECENT_ALERTS`) and every rule of theirs with its
state: active or paused, its last firing (trade time) and the firings its cooldown suppressed. An alert pushed while
the page is open (the in-app toast) joins the list without a reload (``dashboard/js/me_alerts.js``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse

from accounts import watchlist
from alerts.models import Alert, AlertRule
from analytics.models import SymbolStats
from dashboard.views import _page

#: how many of the user's newest alerts the page lists (older ones: /alerts/recent/ and the API)
RECENT_ALERTS = 20


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


def recent_alerts(user_id: int, limit: int = RECENT_ALERTS) -> list[Alert]:
    """The user's newest alerts (of their rules), newest first."""
    return list(Alert.objects.filter(rule__owner=user_id).order_by("-fired_at", "-id")[:limit])


def rules(user_id: int) -> list[dict[str, Any]]:
    """Every rule of the user, newest first, with its state: active, last firing (trade time), suppressed firings
    and how many alerts it stored."""
    rows = AlertRule.objects.filter(owner=user_id).annotate(fired=Count("alerts")).order_by("-id")
    return [
        {
            "rule": rule,
            "fired": rule.fired,
            "last_fired": (
                None if rule.last_fired_ms is None else datetime.fromtimestamp(rule.last_fired_ms / 1000, UTC)
            ),
        }
        for rule in rows
    ]


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
        recent_alerts=recent_alerts(int(request.user.pk or 0)),
        recent_limit=RECENT_ALERTS,
        rules=rules(int(request.user.pk or 0)),
    )
