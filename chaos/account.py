"""The chaos user and its alert rules, created the way a user does: ``POST /api/v1/alert-rules``.

Run by the harness in a subprocess (``manage.py shell -c``), never imported by it: the harness stays an outside
observer. Reads the rules (the API's JSON bodies) from ``CHAOS_RULES``, creates the user ``CHAOS_USER`` (fresh: the
harness empties the tables before each scenario), signs it in and posts each rule through the API's own view,
validation and quota; prints the created rules as JSON (one line).
"""

from __future__ import annotations

import json
import os


def main() -> None:
    """Create the user and post its rules; any answer but 201 raises (the scenario must not start without them)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    rules = json.loads(os.environ["CHAOS_RULES"])
    name = os.environ.get("CHAOS_USER", "chaos")
    user_model = get_user_model()
    user_model.objects.filter(username=name).delete()
    user = user_model.objects.create_user(name, password=None)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    created = []
    for body in rules:
        response = client.post("/api/v1/alert-rules", json.dumps(body), content_type="application/json", secure=True)
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/alert-rules {body}: {response.status_code} {response.content[:500]!r}")
        created.append(response.json())
    print(json.dumps(created))
