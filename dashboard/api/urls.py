"""REST API v1 URLs (mounted at ``/api/v1/``)."""

from django.urls import URLPattern, URLResolver

app_name = "api"

urlpatterns: list[URLPattern | URLResolver] = []
