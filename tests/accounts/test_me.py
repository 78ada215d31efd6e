"""My dashboard (/me/): the watchlist's live tiles in its order, the user's newest alerts and their rules' state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from accounts import watchlist
from alerts.models import Alert, AlertRule
from dashboard import me
from tests.accounts.conftest import client_for
from tests.dashboard.api_factories import make_stats

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]

T = datetime(2024, 1, 1, tzinfo=UTC)


def test_my_dashboard_shows_the_watchlist_tiles_in_order(alice: Any) -> None:
    make_stats("binance", "ETHUSDT")
    make_stats("binance", "BTCUSDT")  # a market with stats, not on the list: not shown
    watchlist.replace(alice, [("kraken", "BTC/USD"), ("binance", "ETHUSDT")])
    client = client_for(alice)
    response = client.get("/me/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index('data-symbol="BTC/USD"') < html.index('data-symbol="ETHUSDT"')
    assert 'data-symbol="BTCUSDT"' not in html
    assert 'data-value="61837.63' in html
    assert [(t["exchange"], t["symbol"], t["stats"] is not None) for t in response.context["tiles"]] == [
        ("kraken", "BTC/USD", False),
        ("binance", "ETHUSDT", True),
    ]
    config = response.context["config"]
    assert config["ws"] == "/ws/overview/"
    assert config["markets"] == ["kraken:BTC/USD", "binance:ETHUSDT"]
    assert "dashboard/js/overview.js" in html
    assert "Recent alerts" in html
    assert "Alert rules" in html
    assert response.context["recent_alerts"] == []
    assert response.context["rules"] == []
    assert 'href="/me/"' in html  # the nav links it for signed-in users


def fire(rule: AlertRule, n: int, at: datetime, price: str = "61836.010000000000") -> Alert:
    """One stored alert of ``rule`` (trade ``n``) fired at ``at``, as the evaluator stores it (numeric(30,12))."""
    return Alert.objects.create(
        rule=rule,
        kind=rule.kind,
        exchange=rule.exchange,
        symbol=rule.symbol,
        trigger=f"trade:{n}",
        trade_id=n,
        price=Decimal(price),
        traded_at=at,
        fired_at=at,
        message=f"{rule.symbol} crossed 61836.63 downward: 61836.01 on binance (#{n})",
    )


def cross(owner: Any, **fields: Any) -> AlertRule:
    """A price_cross rule of ``owner`` on binance:BTCUSDT."""
    return AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": "61836.63", "direction": "down"},
        channels=["in_app", "sms"],
        **fields,
    )


def test_my_dashboard_lists_the_users_newest_alerts_and_their_rules_state(
    alice: Any, bob: Any, django_assert_max_num_queries: Any
) -> None:
    fired_ms = int(T.timestamp() * 1000) + 90_000
    firing = cross(alice, last_fired_ms=fired_ms, suppressed=3, cooldown_s=3600)
    paused = cross(alice, active=False)
    alerts = [fire(firing, n, T + timedelta(seconds=n)) for n in range(1, me.RECENT_ALERTS + 6)]
    others = fire(cross(bob), 999, T + timedelta(days=1))  # bob's: newer than all of alice's, never shown to her
    client = client_for(alice)
    with django_assert_max_num_queries(12):  # a constant number of queries, whatever the rules and alerts
        response = client.get("/me/")
    assert response.status_code == 200
    html = response.content.decode()

    shown = response.context["recent_alerts"]
    assert [a.pk for a in shown] == [a.pk for a in reversed(alerts)][: me.RECENT_ALERTS]
    assert others.pk not in [a.pk for a in shown]
    assert f'data-alert="{alerts[-1].pk}"' in html
    assert f'data-alert="{alerts[0].pk}"' not in html  # older than the newest 20
    assert alerts[-1].message in html
    assert 'id="recent-alerts-empty" hidden' in html
    assert 'data-limit="20"' in html  # how many rows the page script keeps when alerts are pushed
    assert others.message not in html

    rows = {row["rule"].pk: row for row in response.context["rules"]}
    assert list(rows) == [paused.pk, firing.pk]  # newest first; bob's rule is not there
    assert rows[firing.pk]["fired"] == len(alerts)
    assert rows[firing.pk]["last_fired"] == T + timedelta(seconds=90)
    assert rows[paused.pk]["fired"] == 0
    assert rows[paused.pk]["last_fired"] is None
    assert f'<tr data-rule="{firing.pk}" data-active="true">' in html
    assert f'<tr data-rule="{paused.pk}" data-active="false">' in html
    assert "2024-01-01 00:01:30 UTC" in html  # the last firing, in trade time
    assert '<td class="num" data-field="suppressed">3</td>' in html
    assert f'<td class="num" data-field="fired">{len(alerts)}</td>' in html
    assert "never" in html  # the paused rule


def test_my_dashboard_without_alerts_says_so(alice: Any) -> None:
    html = client_for(alice).get("/me/").content.decode()
    assert "No alerts yet" in html
    assert "No alert rules yet" in html


@pytest.mark.parametrize("path", ["/me/", "/alerts/recent/"])
def test_alert_prices_are_shown_as_the_trade_had_them(alice: Any, path: str) -> None:
    # Found by the browser test: the stored numeric(30,12) was printed with its padding ("61836.010000000000").
    fire(cross(alice), 1, T)
    html = client_for(alice).get(path).content.decode()
    assert ">61836.01<" in html
    assert "61836.010000000000" not in html


def test_plain_keeps_large_round_prices_positional() -> None:
    from dashboard.templatetags.number_tags import plain

    assert plain(Decimal("62000.000000000000")) == "62000"
    assert plain(Decimal("0.000012340000")) == "0.00001234"
    assert plain(None) == "—"
