"""Top-level URLs: the dashboard pages, the admin, the login pages, health and metrics."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import views as dashboard_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("healthz", dashboard_views.healthz, name="healthz"),
    path("api/v1/", include("dashboard.api.urls")),
    path("", include("dashboard.urls")),
]
