"""The admin lists backtest runs and prediction models with their owner ("shared" when none) and filters them by
owner, offering only the users who own rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.test import Client

from tests.accounts.test_ownership import model_of, run_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]


def changelist_ids(client: Client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("url", "make"),
    [("/admin/backtest/backtestrun/", run_of), ("/admin/prediction/predictionmodel/", model_of)],
)
def test_the_owner_is_a_column_and_a_filter(alice: Any, bob: Any, url: str, make: Any) -> None:
    shared, alices, bobs = make(None), make(alice), make(bob)
    get_user_model().objects.create_user("carl", password="pw-carl-12345")  # owns nothing: not offered
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(url)
    html = page.content.decode()
    assert "column-owner_name" in html
    for name in ("alice", "bob", "shared"):
        assert f'<td class="field-owner_name">{name}</td>' in html
    choices = {
        choice["display"] for spec in page.context["cl"].filter_specs for choice in spec.choices(page.context["cl"])
    }
    assert {"alice", "bob"} <= choices
    assert "carl" not in choices
    assert "root" not in choices

    assert changelist_ids(client, f"{url}?owner__id__exact={alice.pk}") == {alices.pk}
    assert changelist_ids(client, f"{url}?owner__isnull=True") == {shared.pk}
    assert changelist_ids(client, url) == {shared.pk, alices.pk, bobs.pk}
    # Sortable by owner: alice's row before bob's.
    admin_of = next(a for m, a in site._registry.items() if url.endswith(f"/{m._meta.model_name}/"))
    column = admin_of.list_display.index("owner_name") + 1  # after the actions' checkbox column
    ordered = [row.pk for row in client.get(f"{url}?o={column}").context["cl"].result_list]
    assert ordered.index(alices.pk) < ordered.index(bobs.pk)


def test_the_model_admin_is_read_only_and_hides_the_artifact(alice: Any) -> None:
    model = model_of(alice)
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(f"/admin/prediction/predictionmodel/{model.pk}/change/")
    assert page.status_code == 200
    assert "/nowhere" not in page.content.decode()
    assert client.get("/admin/prediction/predictionmodel/add/").status_code == 403
    assert client.post(f"/admin/prediction/predictionmodel/{model.pk}/change/", {"active": "on"}).status_code == 403
