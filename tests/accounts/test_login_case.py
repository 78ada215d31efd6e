"""Sign-in accepts the username (the e-mail address) in any case, and the lockout counts case variants as one name:
through the login pages on the real PostgreSQL, with django-axes on."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import signup
from tests.accounts.conftest import PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]


def login(client: Client, username: str, password: str = PASSWORD, path: str = "/accounts/login/") -> int:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR="198.51.100.20").status_code


@pytest.fixture
def lockout(settings: Any) -> None:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_ADDRESS_FAILURE_LIMIT = 10


def test_a_signed_up_account_signs_in_whatever_the_case_typed(client: Client) -> None:
    user = get_user_model()(is_active=True)
    user.set_password(PASSWORD)
    signup.create_account("  Carol.Smith@Example.COM ", user)
    assert get_user_model().objects.filter(username="carol.smith@example.com", email="carol.smith@example.com").exists()
    for typed in ["Carol.Smith@Example.COM", "CAROL.SMITH@EXAMPLE.COM", " carol.smith@example.com"]:
        fresh = Client()
        assert login(fresh, typed) == 302, typed
        assert int(fresh.session["_auth_user_id"]) == user.pk
    assert login(client, "Carol.Smith@Example.COM", "wrong") == 200
    assert "_auth_user_id" not in client.session


def test_a_capitalised_username_signs_in_lower_cased_and_in_the_admin(client: Client) -> None:
    get_user_model().objects.create_user("Dave@Example.com", password=PASSWORD, is_staff=True)
    assert login(client, "dave@example.com") == 302
    assert login(Client(), "DAVE@EXAMPLE.COM", path="/admin/login/") == 302


def test_an_exact_match_wins_then_the_lower_cased_name_and_an_ambiguous_variant_signs_in_nobody() -> None:
    users = get_user_model().objects
    bob = users.create_user("bob", password=PASSWORD)
    big_bob = users.create_user("Bob", password=PASSWORD + "-2")
    for typed, password, who in [("bob", PASSWORD, bob), ("Bob", PASSWORD + "-2", big_bob)]:
        client = Client()
        assert login(client, typed, password) == 302
        assert int(client.session["_auth_user_id"]) == who.pk
    assert login(Client(), "BOB") == 302  # the lower-cased name, as sign-up stores it: bob
    users.create_user("Zoe", password=PASSWORD)
    users.create_user("ZoE", password=PASSWORD)
    assert login(Client(), "ZOE") == 200  # neither exactly nor lower-cased: ambiguous, nobody


@pytest.mark.usefixtures("lockout")
def test_case_variants_count_as_one_name_for_the_lockout(client: Client) -> None:
    get_user_model().objects.create_user("erin@example.com", password=PASSWORD)
    assert login(client, "Erin@example.com", "wrong") == 200
    assert login(client, "ERIN@EXAMPLE.COM", "wrong") == 200
    assert login(client, "erin@example.com", "wrong", "/admin/login/") == 429  # the 3rd failure of one name
    # Locked whatever the case, even with the right password.
    assert login(client, "Erin@Example.com") == 429
    assert login(client, "erin@example.com") == 429
    assert "_auth_user_id" not in client.session
