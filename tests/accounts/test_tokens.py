"""API tokens: created with the secret shown once, stored hashed, used as ``Authorization: Bearer``, expiring,
revocable, bounded by a quota, and each user's own (another user's is a 404)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.hashing import digest
from accounts.models import ApiToken
from tests.accounts.conftest import api_for, client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def login_required(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True


def test_create_shows_the_secret_once_and_stores_only_its_hash(alice: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    api = api_for(alice)
    created = api.post("/api/v1/tokens", {"name": "script", "expires_in_days": 30}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["token"]
    assert secret.startswith("cpk_")
    assert body["prefix"] == secret[: tokens.PREFIX_LENGTH]
    assert body["status"] == "active"
    row = ApiToken.objects.get(pk=body["id"])
    assert row.key_hash == digest(secret)
    # nowhere at rest: no column holds it, and no log line does
    assert all(secret not in str(value) for value in ApiToken.objects.filter(pk=row.pk).values().get().values())
    assert secret not in caplog.text
    listed = api.get("/api/v1/tokens").json()["results"]
    assert [t["id"] for t in listed] == [row.pk]
    assert "token" not in listed[0]
    assert secret not in client_for(alice).get("/accounts/tokens/").content.decode()
    assert 29 <= (row.expires_at - timezone.now()).days <= 30


def test_a_bearer_token_authenticates_the_api_and_records_its_use(alice: Any, login_required: None) -> None:
    row, secret = tokens.create_token(alice, "script")
    assert APIClient().get("/api/v1/tokens").status_code == 401
    assert APIClient().get("/api/v1/symbols").status_code == 401
    response = bearer(secret).get("/api/v1/tokens")
    assert response.status_code == 200
    assert response.json()["results"][0]["id"] == row.pk
    assert bearer(secret).get("/api/v1/symbols").status_code == 200  # every API endpoint
    row.refresh_from_db()
    assert row.last_used_at is not None
    first_use = row.last_used_at
    bearer(secret).get("/api/v1/symbols")
    row.refresh_from_db()
    assert row.last_used_at == first_use  # not one write per request


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer cpk_00000000_unknown", "Bearer nonsense"])
def test_bad_bearer_headers_are_401_json(header: str, alice: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/tokens")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_non_ascii_bearer_token_is_401(alice: Any) -> None:
    response = APIClient().get("/api/v1/tokens", HTTP_AUTHORIZATION="Bearer cpk_é".encode().decode("latin-1"))
    assert response.status_code == 401


def test_expired_and_revoked_tokens_are_401_json(alice: Any, login_required: None) -> None:
    expired, expired_secret = tokens.create_token(alice, "old")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(expired_secret).get("/api/v1/symbols")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid, expired or revoked token."
    assert response["WWW-Authenticate"]  # a 401, with a challenge

    live, secret = tokens.create_token(alice, "live")
    assert bearer(secret).get("/api/v1/symbols").status_code == 200
    assert bearer(secret).delete(f"/api/v1/tokens/{live.pk}").status_code == 204
    assert bearer(secret).get("/api/v1/symbols").status_code == 401
    live.refresh_from_db()
    assert live.revoked_at is not None
    statuses = {t["name"]: t["status"] for t in api_for(alice).get("/api/v1/tokens").json()["results"]}
    assert statuses == {"old": "expired", "live": "revoked"}


def test_a_token_of_an_inactive_user_is_401(alice: Any) -> None:
    _, secret = tokens.create_token(alice, "script")
    alice.is_active = False
    alice.save()
    assert bearer(secret).get("/api/v1/tokens").status_code == 401


def test_another_users_token_is_a_404(alice: Any, bob: Any) -> None:
    row, _ = tokens.create_token(alice, "mine")
    assert api_for(bob).delete(f"/api/v1/tokens/{row.pk}").status_code == 404
    assert api_for(bob).get("/api/v1/tokens").json()["results"] == []
    assert client_for(bob).post(f"/accounts/tokens/{row.pk}/revoke/").status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
    assert api_for(alice).delete("/api/v1/tokens/999999").status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 366}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "30"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": True}, "expires_in_days"),
        (["not", "an", "object"], "body"),
    ],
)
def test_bad_token_requests_name_the_param(alice: Any, body: Any, param: str) -> None:
    response = api_for(alice).post("/api/v1/tokens", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not ApiToken.objects.exists()


def test_the_token_quota_counts_active_tokens(alice: Any, settings: Any) -> None:
    settings.ACCOUNTS_MAX_API_TOKENS = 2
    api = api_for(alice)
    first = api.post("/api/v1/tokens", {"name": "a"}, format="json").json()
    assert api.post("/api/v1/tokens", {"name": "b"}, format="json").status_code == 201
    refused = api.post("/api/v1/tokens", {"name": "c"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["param"] == "name"
    assert "at most 2" in refused.json()["error"]["message"]
    # a revoked token no longer counts
    api.delete(f"/api/v1/tokens/{first['id']}")
    assert api.post("/api/v1/tokens", {"name": "c"}, format="json").status_code == 201


def test_token_endpoints_need_a_user_even_when_login_is_optional(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert APIClient().get("/api/v1/tokens").status_code == 401
    assert APIClient().post("/api/v1/tokens", {"name": "x"}, format="json").status_code == 401


def test_the_tokens_page_creates_lists_and_revokes(alice: Any, settings: Any) -> None:
    client = client_for(alice)
    page = client.get("/accounts/tokens/")
    assert page.status_code == 200
    assert "No tokens yet" in page.content.decode()
    created = client.post("/accounts/tokens/", {"name": "laptop", "expires_in_days": 7})
    assert created.status_code == 200
    assert created["Cache-Control"].startswith("max-age=0")
    row = ApiToken.objects.get()
    html = created.content.decode()
    secret = html.split('id="token-secret">')[1].split("<")[0]
    assert row.key_hash == digest(secret)
    assert bearer(secret).get("/api/v1/tokens").status_code == 200
    # shown once: the next view of the page lists it by prefix only
    again = client.get("/accounts/tokens/").content.decode()
    assert secret not in again
    assert row.prefix in again
    revoked = client.post(f"/accounts/tokens/{row.pk}/revoke/", follow=True)
    assert "Token revoked." in revoked.content.decode()
    assert bearer(secret).get("/api/v1/tokens").status_code == 401
    too_long = client.post("/accounts/tokens/", {"name": "x", "expires_in_days": 9999})
    assert "expires_in_days" in too_long.content.decode()
    settings.ACCOUNTS_MAX_API_TOKENS = 1
    assert client.post("/accounts/tokens/", {"name": "one", "expires_in_days": 7}).status_code == 200
    refused = client.post("/accounts/tokens/", {"name": "two", "expires_in_days": 7})
    assert "quota exceeded" in refused.content.decode()
    assert Client().get("/accounts/tokens/").status_code == 302


def test_admin_revokes_tokens_and_never_shows_hashes(alice: Any) -> None:
    from django.contrib.auth import get_user_model

    row, _ = tokens.create_token(alice, "script")
    root = get_user_model().objects.create_superuser("root", "root@example.com", "root-Pass-phrase-1")
    admin = client_for(root)
    change = admin.get(f"/admin/accounts/apitoken/{row.pk}/change/")
    assert change.status_code == 200
    assert row.key_hash not in change.content.decode()
    assert admin.get("/admin/accounts/apitoken/add/").status_code == 403
    admin.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
