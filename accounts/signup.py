"""Account creation: self sign-up (``ACCOUNTS_SIGNUP_OPEN``) and staff invitations.

Both prove the e-mail address first, and neither tells a visitor whether an address has an account:

* Sign-up asks for an address only and always answers "check your e-mail". The mail holds a signed, expiring link
  to choose a password when the address is free, or says the account exists (with the reset link) when it is not.
* An invitation is a random token mailed to the invitee (only its sha256 is stored), single use and expiring.

The account's username is its e-mail address (lower case), so there is no username to collide or to probe.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.hashing import digest, new_secret
from accounts.models import Invitation

logger = logging.getLogger(__name__)

SIGNUP_SALT = "accounts.signup"
EMAIL_MAX_LENGTH = 150  # the username's length
# At most one sign-up (or reset) mail per address per this many seconds: the forms cannot be used to flood a mailbox.
MAIL_INTERVAL_SECONDS = 60


class AccountExistsError(Exception):
    """The address already has an account."""


class InvitationInvalidError(Exception):
    """The invitation is unknown, used or expired."""


def normalise_email(email: str) -> str:
    """The address as stored and used as the username."""
    return email.strip().lower()


def account_exists(email: str) -> bool:
    """Whether an account has this address (as its e-mail or its username)."""
    email = normalise_email(email)
    return get_user_model().objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists()


def mail_allowed(kind: str, email: str) -> bool:
    """Whether a ``kind`` mail may go to ``email`` now (one per :data:`MAIL_INTERVAL_SECONDS`, counted in the cache).

    Fails open when the cache (Redis) is down, like the API throttles: the mail goes, and the failure is logged.
    """
    key = f"accounts:mail:{kind}:{digest(normalise_email(email))}"
    try:
        return bool(cache.add(key, 1, timeout=MAIL_INTERVAL_SECONDS))
    except (RedisError, OSError) as exc:
        logger.warning("account mail limit unavailable: sending", extra={"kind": kind, "error": repr(exc)})
        return True


def _send(request: HttpRequest, to: str, template: str, context: dict[str, Any]) -> None:
    context = {"site": request.get_host(), **context}
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context).strip()
    body = render_to_string(f"accounts/email/{template}.txt", context)
    send_mail(subject, body, None, [to])


def signup_token(email: str) -> str:
    """The signed token of a sign-up link for ``email`` (expires after ``ACCOUNTS_SIGNUP_LINK_HOURS``)."""
    return signing.TimestampSigner(salt=SIGNUP_SALT).sign(normalise_email(email))


def email_of_signup_token(token: str) -> str | None:
    """The address a sign-up token was made for, or None when it is forged or expired."""
    try:
        return signing.TimestampSigner(salt=SIGNUP_SALT).unsign(
            token, max_age=timedelta(hours=settings.ACCOUNTS_SIGNUP_LINK_HOURS)
        )
    except signing.BadSignature:
        return None


def request_signup(request: HttpRequest, email: str) -> None:
    """Mail ``email`` its sign-up link, or, when it has an account already, a note saying so (never both); nothing
    when a sign-up mail went to it within :data:`MAIL_INTERVAL_SECONDS` (the visitor's answer is the same)."""
    email = normalise_email(email)
    if not mail_allowed("signup", email):
        return
    if account_exists(email):
        reset = request.build_absolute_uri(reverse("accounts:password_reset"))
        _send(request, email, "signup_exists", {"reset_url": reset, "login_url": request.build_absolute_uri("/")})
        return
    link = request.build_absolute_uri(reverse("accounts:signup_confirm", args=[signup_token(email)]))
    _send(request, email, "signup", {"url": link, "hours": settings.ACCOUNTS_SIGNUP_LINK_HOURS})


def create_account(email: str, user: AbstractBaseUser) -> AbstractBaseUser:
    """Save ``user`` (its password set) as the account of ``email``; :class:`AccountExistsError` when it is taken."""
    email = normalise_email(email)
    user.username = email  # type: ignore[attr-defined]
    user.email = email  # type: ignore[attr-defined]
    try:
        with transaction.atomic():
            if account_exists(email):
                raise AccountExistsError(email)
            user.save()
    except IntegrityError:
        raise AccountExistsError(email) from None
    return user


def create_invitation(email: str, created_by: Any) -> tuple[Invitation, str]:
    """A new invitation for ``email``; returns it and the token of its link (not stored, shown once)."""
    token = new_secret(32)
    invitation = Invitation.objects.create(
        email=normalise_email(email),
        token_hash=digest(token),
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        expires_at=timezone.now() + timedelta(days=settings.ACCOUNTS_INVITATION_DAYS),
    )
    return invitation, token


def invitation_url(request: HttpRequest, token: str) -> str:
    """The absolute link of an invitation token."""
    return request.build_absolute_uri(reverse("accounts:invitation", args=[token]))


def send_invitation(request: HttpRequest, invitation: Invitation, token: str) -> None:
    """Mail the invitee the link."""
    context = {"url": invitation_url(request, token), "days": settings.ACCOUNTS_INVITATION_DAYS}
    _send(request, invitation.email, "invitation", context)


def usable_invitation(token: str) -> Invitation | None:
    """The unused, unexpired invitation of ``token``, or None."""
    if not token or len(token) > 128:
        return None
    return Invitation.objects.filter(
        token_hash=digest(token), used_at__isnull=True, expires_at__gt=timezone.now()
    ).first()


def accept_invitation(token: str, user: AbstractBaseUser) -> AbstractBaseUser:
    """Create the invitee's account from ``user`` (its password set) and use the invitation up, atomically.

    Raises :class:`InvitationInvalidError` when it is unknown, used or expired (a second use included, even a
    concurrent one: the row is locked) and :class:`AccountExistsError` when its address has an account.
    """
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .filter(token_hash=digest(token), used_at__isnull=True, expires_at__gt=timezone.now())
            .first()
        )
        if invitation is None:
            raise InvitationInvalidError(token[:4])
        create_account(invitation.email, user)
        invitation.used_at = timezone.now()
        invitation.used_by = user  # type: ignore[assignment]
        invitation.save(update_fields=["used_at", "used_by"])
    return user
