"""The accounts pages' forms."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.auth.forms import PasswordResetForm

from accounts.signup import EMAIL_MAX_LENGTH, mail_allowed
from accounts.tokens import DEFAULT_DAYS, NAME_MAX_LENGTH
from ingest.records import EXCHANGES


class EmailForm(forms.Form):
    """An e-mail address (sign-up, invitations)."""

    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH)


class TokenForm(forms.Form):
    """A new API token: its name and how many days it lives (``ACCOUNTS_TOKEN_MAX_DAYS`` at most, checked by
    :func:`accounts.tokens.create_token`)."""

    name = forms.CharField(max_length=NAME_MAX_LENGTH)
    expires_in_days = forms.IntegerField(label="Expires in (days)", min_value=1, initial=DEFAULT_DAYS)


class WatchlistAddForm(forms.Form):
    """One market to append to the watchlist."""

    exchange = forms.ChoiceField(choices=[(e, e) for e in sorted(EXCHANGES)], initial="binance")
    symbol = forms.CharField(max_length=32)


class LimitedPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending at most one mail per address per ``MAIL_INTERVAL_SECONDS`` (same answer)."""

    def get_users(self, email: str) -> Iterable[Any]:
        """The accounts to mail: none while the address's last reset mail is recent."""
        if not mail_allowed("reset", email):
            return []
        return super().get_users(email)
