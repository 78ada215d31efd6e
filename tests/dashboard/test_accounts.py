"""Accounts: Django's login and logout pages, and the login-if-configured helpers shared by pages and API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from rest_framework.request import Request

from dashboard.auth import LoginRequiredIfConfigured, login_required_if_configured


@login_required_if_configured
def sample_view(request: HttpRequest, name: str = "") -> HttpResponse:
    return HttpResponse(f"hello {name}")


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("frank", password="pw-frank-123")


@pytest.mark.parametrize("required", [True, False])
def test_decorator_follows_the_setting(settings: Any, required: bool) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = required
    request = RequestFactory().get("/symbol/binance/BTCUSDT/?interval=5m")
    request.user = AnonymousUser()
    response = sample_view(request, name="anon")
    if required:
        assert response.status_code == 302
        assert response["Location"] == "/accounts/login/?next=/symbol/binance/BTCUSDT/%3Finterval%3D5m"
    else:
        assert response.status_code == 200
        assert response.content == b"hello anon"
    assert sample_view.__name__ == "sample_view"


@pytest.mark.django_db
def test_decorator_lets_users_in(settings: Any, user: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    request = RequestFactory().get("/")
    request.user = user
    assert sample_view(request, name="frank").content == b"hello frank"


@pytest.mark.django_db
def test_permission_class(settings: Any, user: Any) -> None:
    permission = LoginRequiredIfConfigured()
    anonymous = Request(RequestFactory().get("/api/v1/stats"))
    anonymous.user = AnonymousUser()
    known = Request(RequestFactory().get("/api/v1/stats"))
    known.user = user
    settings.DASHBOARD_LOGIN_REQUIRED = True
    assert not permission.has_permission(anonymous, None)  # type: ignore[arg-type]
    assert permission.has_permission(known, None)  # type: ignore[arg-type]
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert permission.has_permission(anonymous, None)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_login_page_renders_in_dashboard_style(client: Client) -> None:
    response = client.get("/accounts/login/?next=/whales/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "dashboard/css/dashboard.css" in html
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert 'value="/whales/"' in html
    assert 'name="viewport"' in html


@pytest.mark.django_db
def test_login_logout_round_trip(client: Client, user: Any, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    bad = client.post("/accounts/login/", {"username": "frank", "password": "wrong"})
    assert bad.status_code == 200
    assert 'role="alert"' in bad.content.decode()
    good = client.post("/accounts/login/", {"username": "frank", "password": "pw-frank-123", "next": "/api/v1/symbols"})
    assert good.status_code == 302
    assert good["Location"] == "/api/v1/symbols"
    assert client.get("/api/v1/symbols").status_code == 200
    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    assert out["Location"] == "/accounts/login/"
    assert client.get("/api/v1/symbols").status_code == 401


@pytest.mark.django_db
def test_login_redirects_to_the_overview_by_default(client: Client, user: Any) -> None:
    response = client.post("/accounts/login/", {"username": "frank", "password": "pw-frank-123"})
    assert response.status_code == 302
    assert response["Location"] == "/"
