"""The foundation's own management commands: topic creation and the demo user."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from cryptoproject.kafka import admin_client
from tests.conftest import unique


def test_create_topics_is_idempotent(settings: Any) -> None:
    settings.KAFKA_TRADES_TOPIC = unique("test.create.trades")
    settings.KAFKA_DLQ_TOPIC = unique("test.create.dlq")
    settings.KAFKA_TRADES_PARTITIONS = 3
    try:
        first, second = StringIO(), StringIO()
        call_command("create_topics", stdout=first)
        call_command("create_topics", stdout=second)
        assert f"{settings.KAFKA_TRADES_TOPIC}: created (3 partitions)" in first.getvalue()
        assert f"{settings.KAFKA_DLQ_TOPIC}: created (1 partition)" in first.getvalue()
        assert f"{settings.KAFKA_TRADES_TOPIC}: exists" in second.getvalue()
        admin = admin_client()
        try:
            (described,) = admin.describe_topics([settings.KAFKA_TRADES_TOPIC])
        finally:
            admin.close()
        assert len(described["partitions"]) == 3
    finally:
        admin = admin_client()
        try:
            admin.delete_topics([settings.KAFKA_TRADES_TOPIC, settings.KAFKA_DLQ_TOPIC])
        finally:
            admin.close()


@pytest.mark.django_db
def test_demo_user_is_created_then_reset(settings: Any) -> None:
    settings.DEBUG = True
    out = StringIO()
    call_command("ensure_demo_user", stdout=out)
    user = get_user_model().objects.get(username="demo")
    assert user.is_superuser
    assert user.is_staff
    user.set_password("changed")
    user.is_staff = False
    user.save()
    call_command("ensure_demo_user", stdout=out)
    user.refresh_from_db()
    assert user.check_password("demo")
    assert user.is_staff
    assert out.getvalue().splitlines() == ["demo user created", "demo user ready"]


@pytest.mark.django_db
def test_demo_user_refused_in_production(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=true"):
        call_command("ensure_demo_user")
    assert not get_user_model().objects.filter(username="demo").exists()
