"""Sign-in by username in any case: ``Alice@Example.com`` is the account ``alice@example.com``.

Sign-up and invitations store the address in lower case as the username (:func:`accounts.signup.normalise_email`),
and people type it capitalised (phones capitalise the first letter). Django's ``ModelBackend`` compares the username
exactly; this one finds the account whatever the case. An exact match wins (two legacy accounts ``Bob`` and
``bob`` each keep their own login), then the lower-cased name (as sign-up stores it); a case variant that matches
several other accounts signs in none. The lockout
(django-axes) counts the lower-cased name (:func:`cryptoproject.lockout.lockout_username`), so case variants share
one count.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


def find_user(username: str) -> Any | None:
    """The account whose username is ``username`` exactly, else its lower-cased form, else the only one equal to it
    ignoring case."""
    users = get_user_model()._default_manager
    field = get_user_model().USERNAME_FIELD
    name = username.strip()
    for exact in dict.fromkeys((name, name.lower())):  # both use the username's unique index
        user = users.filter(**{field: exact}).first()
        if user is not None:
            return user
    matches = list(users.filter(**{f"{field}__iexact": name})[:2])
    return matches[0] if len(matches) == 1 else None


class CaseInsensitiveModelBackend(ModelBackend):
    """``ModelBackend`` (permissions included) with the username looked up by :func:`find_user`."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any | None:
        """The active user of these credentials, or None."""
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = find_user(username)
        if user is None:
            # Hash anyway, as ModelBackend does: an unknown name takes as long to refuse as a wrong password.
            get_user_model()().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
