"""Staff sessions end after STAFF_SESSION_IDLE_SECONDS idle; everyone else keeps Django's two-week session."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from accounts.staff_sessions import LAST_SEEN_KEY
from tests.accounts.conftest import PASSWORD
from tests.conftest import manage
from tests.foundation.test_fail_closed import run

pytestmark = pytest.mark.django_db


def signed_in(username: str) -> Client:
    """A test client signed in through the authentication backends, as a browser would be."""
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def idle_for(client: Client, seconds: float) -> None:
    """Move the session's last request ``seconds`` into the past (what an idle browser leaves behind)."""
    session = client.session
    session[LAST_SEEN_KEY] = time.time() - seconds
    session.save()


def test_an_idle_staff_session_is_signed_out(staff: Any, settings: Any) -> None:
    settings.STAFF_SESSION_IDLE_SECONDS = 1800
    client = signed_in(staff.username)
    assert client.get("/admin/").status_code == 200
    idle_for(client, 1801)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "_auth_user_id" not in client.session
    # The password again, and the admin is back.
    client = signed_in(staff.username)
    assert client.get("/admin/").status_code == 200


def test_an_active_staff_session_stays_and_its_clock_moves(staff: Any, settings: Any) -> None:
    settings.STAFF_SESSION_IDLE_SECONDS = 1800
    client = signed_in(staff.username)
    signed_in_at = client.session[LAST_SEEN_KEY]  # stamped with the sign-in
    assert client.get("/admin/").status_code == 200
    assert client.session[LAST_SEEN_KEY] == signed_in_at  # within a minute: the session is not written again
    idle_for(client, 1700)
    assert client.get("/admin/").status_code == 200
    assert client.session[LAST_SEEN_KEY] > time.time() - 60
    idle_for(client, 1700)  # another 1,700 s: 3,400 s since sign-in, never 1,800 idle
    assert client.get("/admin/").status_code == 200


def test_other_users_keep_their_session(alice: Any, settings: Any) -> None:
    settings.STAFF_SESSION_IDLE_SECONDS = 60
    settings.DASHBOARD_LOGIN_REQUIRED = True
    client = signed_in(alice.username)
    assert client.get("/me/").status_code == 200
    assert LAST_SEEN_KEY not in client.session  # no write for a user the timeout does not concern
    idle_for(client, 7 * 86400)
    assert client.get("/me/").status_code == 200
    assert client.session["_auth_user_id"] == str(alice.pk)


@pytest.mark.parametrize("value", ["0", "59", "86401", "x"])
def test_bad_idle_timeout_is_refused_naming_it(value: str) -> None:
    result = run(manage("check"), DJANGO_DEBUG="true", STAFF_SESSION_IDLE_SECONDS=value)
    assert result.returncode != 0
    assert "STAFF_SESSION_IDLE_SECONDS" in result.stderr
