"""Users and clients for the accounts tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.dashboard.api_factories import locmem_cache

__all__ = ["locmem_cache"]

PASSWORD = "a-long-Passphrase-42"


@pytest.fixture
def alice() -> Any:
    return get_user_model().objects.create_user("alice", email="alice@example.com", password=PASSWORD)


@pytest.fixture
def bob() -> Any:
    return get_user_model().objects.create_user("bob", email="bob@example.com", password=PASSWORD)


@pytest.fixture
def staff() -> Any:
    return get_user_model().objects.create_user("sam", email="sam@example.com", password=PASSWORD, is_staff=True)


def client_for(user: Any) -> Client:
    """A test client signed in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


def api_for(user: Any) -> APIClient:
    """A DRF client signed in (session) as ``user``."""
    client = APIClient()
    client.force_authenticate(user)
    return client
