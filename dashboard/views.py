"""Dashboard pages and the health endpoint."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def overview(request: HttpRequest) -> HttpResponse:
    """The overview page (placeholder until the dashboard issue lands)."""
    return render(request, "dashboard/overview.html")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and ``make demo``."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return JsonResponse({"status": "ok", "database": "ok"})
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy"
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
