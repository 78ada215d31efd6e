"""The accounts app's configuration."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Sign-up, invitations, API tokens, watchlists and quotas."""

    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the OpenAPI description of the API tokens and the staff sessions' sign-in receiver."""
        from accounts import schema, staff_sessions  # noqa: F401
