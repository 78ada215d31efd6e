"""The rule book's version row: raised by PostgreSQL triggers on every change to the rules and their destinations,
never by the evaluator's own writes; the consumer reloads its book exactly when it moved."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection

from alerts import wiring
from alerts.models import AlertRule
from notifications.models import Destination

pytestmark = pytest.mark.django_db


def version() -> int:
    with connection.cursor() as cur:
        cur.execute(wiring._VERSION)
        (value,) = cur.fetchone()
    return int(value)


def cross_rule(owner: User, level: str = "100") -> AlertRule:
    return AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": level, "direction": "up"},
    )


def test_every_change_to_the_rules_raises_the_version_and_the_evaluators_writes_do_not() -> None:
    user = get_user_model().objects.create(username="versioned")
    seen = [version()]
    rule = cross_rule(user)
    seen.append(version())
    with connection.cursor() as cur:
        wiring.update_rules(cur, [(rule.pk, {"pos": 1}, 123, 2)])  # the evaluator's state, last firing, suppressed
    assert version() == seen[-1]
    rule.refresh_from_db()
    assert (rule.state, rule.last_fired_ms, rule.suppressed) == ({"pos": 1}, 123, 2)

    AlertRule.objects.filter(pk=rule.pk).update(active=False)  # behind the ORM's save: no updated_at
    seen.append(version())
    destination = Destination.objects.create(owner=user, kind="in_app", target="")
    rule.destinations.add(destination)
    seen.append(version())
    rule.destinations.remove(destination)
    seen.append(version())
    rule.params = {"level": "200", "direction": "up"}
    rule.save()
    seen.append(version())
    rule.delete()
    seen.append(version())
    assert len(set(seen)) == len(seen), seen


def test_a_version_is_never_repeated_after_its_table_was_emptied() -> None:
    user = get_user_model().objects.create(username="flushed")
    cross_rule(user)
    before = version()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE alerts_rulebookversion")
    assert version() == 0
    cross_rule(user, "300")
    assert version() not in (0, before)


def test_the_book_reloads_when_and_only_when_the_version_moved() -> None:
    user = get_user_model().objects.create(username="reloaded")
    rule = cross_rule(user)
    book = wiring.RuleBook()
    wiring._refresh(book, "default")
    wiring._refresh(book, "default")
    assert book.loads == 1
    assert list(book.rules) == [rule.pk]
    with connection.cursor() as cur:
        wiring.update_rules(cur, [(rule.pk, {"pos": -1}, None, 0)])
    wiring._refresh(book, "default")
    assert book.loads == 1
    AlertRule.objects.filter(pk=rule.pk).update(active=False)
    wiring._refresh(book, "default")
    assert book.loads == 2
    assert not book.rules
