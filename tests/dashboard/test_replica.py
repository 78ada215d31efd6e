"""The read replica on the real stack: a PostgreSQL streaming replica that scripts/stack.sh starts.

Which server answered is shown, not assumed: the ``replica`` alias is first proven to be a standby in recovery on
the replica's port, then every statement of a request is captured on each alias's own connection. The routing is
switched on with exactly the settings that cryptoproject/settings.py makes of ``DATABASE_REPLICA_URL`` (read from a
child process with that variable set), since the suite's own settings route nothing (see tests/settings.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analytics.models import Trade
from backtest.models import BacktestRun
from cryptoproject.celery import app
from cryptoproject.db_router import REPLICA
from cryptoproject.middleware import ReplicaReadsMiddleware
from tests.backtest.helpers import store_candles
from tests.conftest import ROOT, subprocess_env, wait_for
from tests.dashboard.api_factories import locmem_cache, make_trades

pytestmark = [
    # Committed rows: the replica only ever sees what the primary committed.
    pytest.mark.django_db(transaction=True, databases=["default", REPLICA]),
    pytest.mark.usefixtures("locmem_cache"),
]
__all__ = ["locmem_cache"]

WIRING = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({"MIDDLEWARE": settings.MIDDLEWARE, "DATABASE_ROUTERS": settings.DATABASE_ROUTERS,
                  "DATABASES": settings.DATABASES}, default=str))
"""


def configured(replica_url: str | None) -> dict[str, Any]:
    """The settings cryptoproject/settings.py makes with ``DATABASE_REPLICA_URL`` set to ``replica_url`` (or unset)."""
    env = subprocess_env()
    env.pop("DATABASE_REPLICA_URL", None)
    if replica_url is not None:
        env["DATABASE_REPLICA_URL"] = replica_url
    result = subprocess.run(
        [sys.executable, "-c", WIRING], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def streaming_replica() -> None:
    """The stack's replica, started (or found streaming) by the project's own script, with this run's stack env."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), "up", "postgres-replica"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def replica_url() -> str:
    """The URL of the suite's ``replica`` alias (the stack's replica, the test database's name)."""
    replica = django_settings.DATABASES[REPLICA]
    return f"postgres://{replica['USER']}:{replica['PASSWORD']}@{replica['HOST']}:{replica['PORT']}/{replica['NAME']}"


@pytest.fixture(scope="module")
def wired(streaming_replica: None) -> dict[str, Any]:
    """What settings.py makes of ``DATABASE_REPLICA_URL`` naming the stack's replica (one child process)."""
    return configured(replica_url())


@pytest.fixture
def replica_routing(settings: Any, wired: dict[str, Any]) -> Iterator[None]:
    """Routing on, as in production with ``DATABASE_REPLICA_URL`` naming the stack's replica."""
    replica = settings.DATABASES[REPLICA]
    # The suite's alias is the one settings.py makes of the URL: same connection options, a test mirror of default.
    assert wired["DATABASES"][REPLICA]["OPTIONS"] == replica["OPTIONS"]
    assert wired["DATABASES"][REPLICA]["CONN_MAX_AGE"] == settings.DATABASES["default"]["CONN_MAX_AGE"]
    assert wired["DATABASES"][REPLICA]["TEST"]["MIRROR"] == "default"
    settings.DATABASE_REPLICA_URL = replica_url()
    settings.DATABASE_ROUTERS = wired["DATABASE_ROUTERS"]
    settings.MIDDLEWARE = wired["MIDDLEWARE"]
    settings.DASHBOARD_LOGIN_REQUIRED = False
    yield
    app.control.purge()  # the backtest runs the tests start are queued for a worker that never comes


def server(alias: str) -> tuple[bool, int]:
    """(in recovery, port) of the server behind ``alias``'s connection."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        in_recovery, port = cursor.fetchone()
    return bool(in_recovery), int(port)


def served(request: Callable[[], Any]) -> tuple[Any, str, str]:
    """The response, and the SQL that the primary and the replica ran for it (each joined into one string)."""
    with CaptureQueriesContext(connections["default"]) as primary, CaptureQueriesContext(connections[REPLICA]) as rep:
        response = request()
    return response, "\n".join(q["sql"] for q in primary), "\n".join(q["sql"] for q in rep)


def replicated(condition: Callable[[], bool]) -> None:
    """Wait (with a deadline) until the replica has replayed what the primary committed."""
    wait_for(condition, timeout=30, what="the replica to replay the primary's commits")


@pytest.mark.usefixtures("replica_routing")
def test_page_and_api_reads_go_to_the_replica_writes_to_the_primary(client: Client, settings: Any) -> None:
    assert server(REPLICA) == (True, int(settings.DATABASES[REPLICA]["PORT"]))
    assert server("default") == (False, int(settings.DATABASES["default"]["PORT"]))
    make_trades(3)
    replicated(lambda: Trade.objects.using(REPLICA).count() == 3)

    response, primary_sql, replica_sql = served(lambda: client.get("/api/v1/trades?exchange=binance&symbol=BTCUSDT"))
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 3
    assert "analytics_trade" in replica_sql
    assert "analytics_" not in primary_sql

    # A page: its ORM reads and the raw-SQL market list (analytics.queries) alike.
    response, primary_sql, replica_sql = served(lambda: client.get("/whales/"))
    assert response.status_code == 200
    assert "analytics_trade" in replica_sql
    assert "analytics_whalealert" in replica_sql
    assert "analytics_" not in primary_sql

    # Not a page or API URL: the admin reads the same table from the primary.
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    response, primary_sql, replica_sql = served(lambda: client.get("/admin/analytics/trade/"))
    assert response.status_code == 200
    assert "analytics_trade" in primary_sql
    assert replica_sql == ""


@pytest.mark.usefixtures("replica_routing")
def test_a_client_that_wrote_reads_the_primary_for_a_while(client: Client) -> None:
    store_candles(["100", "101", "102"])  # a run of a symbol without candles is refused up front
    body = {"strategy": "sma_cross", "symbol": "BTCUSDT", "from": "2024-01-01", "to": "2024-01-03"}
    response, primary_sql, replica_sql = served(
        lambda: client.post("/api/v1/backtests", json.dumps(body), content_type="application/json")
    )
    assert response.status_code == 202, response.content
    assert 'INSERT INTO "backtest_backtestrun"' in primary_sql
    assert replica_sql == ""
    assert ReplicaReadsMiddleware.PIN_COOKIE in client.cookies
    run = f"/api/v1/backtests/{response.json()['id']}?curves=0"

    # Pinned: the run just created is read where it was written, however far the replica trails.
    response, primary_sql, replica_sql = served(lambda: client.get(run))
    assert response.status_code == 200
    assert "backtest_backtestrun" in primary_sql
    assert replica_sql == ""

    # Once the pin is over (its cookie gone, or holding a past time), reads go back to the replica.
    replicated(lambda: BacktestRun.objects.using(REPLICA).filter(pk=response.json()["id"]).exists())
    client.cookies[ReplicaReadsMiddleware.PIN_COOKIE] = "1.0"
    response, primary_sql, replica_sql = served(lambda: client.get(run))
    assert response.status_code == 200
    assert "backtest_backtestrun" in replica_sql
    assert "backtest_" not in primary_sql


@pytest.mark.usefixtures("replica_routing")
def test_health_shows_the_replica_and_its_lag(client: Client, settings: Any) -> None:
    make_trades(2)
    replicated(lambda: Trade.objects.using(REPLICA).count() == 2)
    replica = client.get("/api/v1/health").json()["replica"]
    assert replica["in_recovery"] is True
    assert replica["error"] is None
    assert replica["lag_bytes"] >= 0
    assert replica["lag_seconds"] is None or replica["lag_seconds"] >= 0


@pytest.mark.usefixtures("streaming_replica")
def test_without_a_replica_url_nothing_is_routed(client: Client, settings: Any) -> None:
    unset = configured(None)
    assert REPLICA not in unset["DATABASES"]
    assert unset["DATABASE_ROUTERS"] == []
    assert ReplicaReadsMiddleware.__module__ + ".ReplicaReadsMiddleware" not in unset["MIDDLEWARE"]
    # The suite's own settings are those: the same middleware, no router.
    assert unset["MIDDLEWARE"] == settings.MIDDLEWARE
    assert settings.DATABASE_ROUTERS == []
    settings.DASHBOARD_LOGIN_REQUIRED = False
    make_trades(1)
    response, primary_sql, replica_sql = served(lambda: client.get("/api/v1/trades?exchange=binance&symbol=BTCUSDT"))
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert "analytics_trade" in primary_sql
    assert replica_sql == ""
    assert client.get("/api/v1/health").json()["replica"] is None
