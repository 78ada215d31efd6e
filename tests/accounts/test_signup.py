"""Sign-up (open and closed), invitations (single use, expiry), password change and reset by e-mail: through the
test client on the real PostgreSQL, with Django's locmem mail outbox."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from accounts import signup
from accounts.hashing import digest
from accounts.models import Invitation
from tests.accounts.conftest import PASSWORD, client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]

NEW_PASSWORD = "another-Long-phrase-77"


def link_in(message: Any) -> str:
    """The path of the first link to this site in a mail."""
    match = re.search(r"https?://[^/\s]+(/\S+)", message.body)
    assert match, message.body
    return match.group(1)


def test_closed_signup_refuses_and_creates_nothing(client: Client, settings: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = False
    page = client.get("/accounts/signup/")
    assert page.status_code == 403
    assert "Sign-up is closed" in page.content.decode()
    posted = client.post("/accounts/signup/", {"email": "new@example.com"})
    assert posted.status_code == 403
    assert mail.outbox == []
    # a link made while it was open does not work once it is closed
    closed_link = client.get(f"/accounts/signup/{signup.signup_token('new@example.com')}/")
    assert closed_link.status_code == 403
    assert not get_user_model().objects.filter(email="new@example.com").exists()


def test_open_signup_mails_a_link_that_creates_the_account(client: Client, settings: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    form = client.get("/accounts/signup/")
    assert form.status_code == 200
    assert "dashboard/css/dashboard.css" in form.content.decode()
    response = client.post("/accounts/signup/", {"email": "New@Example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/signup/sent/"
    assert client.get(response["Location"]).status_code == 200
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new@example.com"]
    link = link_in(mail.outbox[0])
    assert link.startswith("/accounts/signup/")
    page = client.get(link)
    assert page.status_code == 200
    assert "new@example.com" in page.content.decode()
    weak = client.post(link, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200  # the password validators apply
    assert not get_user_model().objects.filter(username="new@example.com").exists()
    done = client.post(link, {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == "/me/"
    user = get_user_model().objects.get(username="new@example.com")
    assert user.email == "new@example.com"
    assert user.check_password(PASSWORD)
    assert client.get("/me/").status_code == 200  # signed in
    # the link is spent: the address has an account now
    again = Client().post(link, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert again.status_code == 404


def test_signup_does_not_tell_whether_an_address_has_an_account(client: Client, settings: Any, alice: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    taken = client.post("/accounts/signup/", {"email": "ALICE@example.com"})
    free = client.post("/accounts/signup/", {"email": "nobody@example.com"})
    assert (taken.status_code, taken["Location"]) == (free.status_code, free["Location"])
    assert client.get(taken["Location"]).content == client.get(free["Location"]).content
    # Only the owner of the address learns it has an account, by mail, with the reset link.
    to_alice, to_nobody = mail.outbox
    assert to_alice.to == ["alice@example.com"]
    assert "has one already" in to_alice.body
    assert "/accounts/password/reset/" in to_alice.body
    assert "/accounts/signup/" in to_nobody.body


def test_a_forged_or_expired_signup_link_is_refused(client: Client, settings: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    settings.ACCOUNTS_SIGNUP_LINK_HOURS = 1
    token = signup.signup_token("late@example.com")
    assert signup.email_of_signup_token(token) == "late@example.com"
    assert client.get(f"/accounts/signup/{token[:-2]}xx/").status_code == 404

    class TwoHoursAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 7200)

    old = TwoHoursAgo(salt=signup.SIGNUP_SALT).sign("late@example.com")
    assert client.get(f"/accounts/signup/{old}/").status_code == 404
    assert not get_user_model().objects.filter(email="late@example.com").exists()


def test_staff_invite_works_once_while_signup_is_closed(settings: Any, staff: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = False
    staff_client = client_for(staff)
    page = staff_client.post("/accounts/invitations/", {"email": "Invitee@Example.com"})
    assert page.status_code == 200
    invitation = Invitation.objects.get()
    assert invitation.email == "invitee@example.com"
    assert invitation.created_by == staff
    (message,) = mail.outbox
    assert message.to == ["invitee@example.com"]
    link = link_in(message)
    token = link.rstrip("/").rpartition("/")[2]
    assert link in page.content.decode()  # shown once to staff
    # only the hash is stored
    assert invitation.token_hash == digest(token)
    assert token not in str(Invitation.objects.values_list())
    assert token not in staff_client.get("/accounts/invitations/").content.decode()

    invitee = Client()
    form = invitee.get(link)
    assert form.status_code == 200
    assert "invitee@example.com" in form.content.decode()
    done = invitee.post(link, {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert done.status_code == 302
    user = get_user_model().objects.get(username="invitee@example.com")
    invitation.refresh_from_db()
    assert invitation.used_by == user
    assert invitation.used_at is not None
    # a second use, of the page or of the form, is refused
    assert Client().get(link).status_code == 404
    assert Client().post(link, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}).status_code == 404
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_an_expired_invitation_is_refused(staff: Any) -> None:
    invitation, token = signup.create_invitation("late@example.com", staff)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(f"/accounts/invitation/{token}/").status_code == 404
    posted = Client().post(f"/accounts/invitation/{token}/", {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert posted.status_code == 404
    assert not get_user_model().objects.filter(username="late@example.com").exists()
    assert Client().get("/accounts/invitation/unknown-token/").status_code == 404
    assert Client().get(f"/accounts/invitation/{'x' * 200}/").status_code == 404


def test_accepting_an_invitation_twice_is_refused_at_the_database(staff: Any) -> None:
    # The page checks first; the atomic accept is what stops a second concurrent use: call it directly.
    _, token = signup.create_invitation("twice@example.com", staff)
    first = get_user_model()(username="x")
    first.set_password(PASSWORD)
    signup.accept_invitation(token, first)
    second = get_user_model()(username="y")
    second.set_password(PASSWORD)
    with pytest.raises(signup.InvitationInvalidError):
        signup.accept_invitation(token, second)
    assert get_user_model().objects.filter(email="twice@example.com").count() == 1


def test_an_invitation_for_an_address_with_an_account_creates_nothing(staff: Any, alice: Any) -> None:
    _, token = signup.create_invitation("alice@example.com", staff)
    response = Client().post(f"/accounts/invitation/{token}/", {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert response.status_code == 404
    assert get_user_model().objects.filter(email="alice@example.com").count() == 1
    assert Invitation.objects.get().used_at is None


def test_only_staff_open_the_invitations_page(alice: Any, staff: Any) -> None:
    assert Client().get("/accounts/invitations/").status_code == 302  # to the login page
    assert client_for(alice).get("/accounts/invitations/").status_code == 302
    assert client_for(staff).get("/accounts/invitations/").status_code == 200


def test_admin_creates_an_invitation_and_shows_its_link_once(staff: Any) -> None:
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_invitation"))
    admin = client_for(staff)
    assert admin.get("/admin/accounts/invitation/add/").status_code == 200
    response = admin.post("/admin/accounts/invitation/add/", {"email": "viaadmin@example.com"}, follow=True)
    assert response.status_code == 200
    invitation = Invitation.objects.get(email="viaadmin@example.com")
    link = link_in(mail.outbox[0])
    assert link in response.content.decode()
    assert invitation.token_hash == digest(link.rstrip("/").rpartition("/")[2])
    expire = admin.post(
        "/admin/accounts/invitation/",
        {"action": "expire_now", "_selected_action": [invitation.pk]},
        follow=True,
    )
    assert expire.status_code == 200
    assert Client().get(link).status_code == 404


def test_password_change(alice: Any) -> None:
    client = client_for(alice)
    assert client.get("/accounts/password/change/").status_code == 200
    wrong = client.post(
        "/accounts/password/change/",
        {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert wrong.status_code == 200
    done = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302
    assert client.get(done["Location"]).status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert Client().get("/accounts/password/change/").status_code == 302  # anonymous: to the login page


def test_password_reset_by_email_without_revealing_accounts(alice: Any) -> None:
    client = Client()
    assert "Forgotten your password?" in client.get("/accounts/login/").content.decode()
    assert client.get("/accounts/password/reset/").status_code == 200
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    known = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert client.get(known["Location"]).status_code == 200
    (message,) = mail.outbox  # only the real account gets mail
    assert message.to == ["alice@example.com"]
    link = link_in(message)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    set_url = form.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert client.get(done["Location"]).status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    # the link works once
    assert "cannot be used" in Client().get(link, follow=True).content.decode()


def test_the_login_page_links_to_signup_only_when_open(client: Client, settings: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    assert "/accounts/signup/" in client.get("/accounts/login/").content.decode()
    settings.ACCOUNTS_SIGNUP_OPEN = False
    assert "/accounts/signup/" not in client.get("/accounts/login/").content.decode()


def test_one_signup_or_reset_mail_per_address_per_interval(client: Client, settings: Any, alice: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    first = client.post("/accounts/signup/", {"email": "again@example.com"})
    second = client.post("/accounts/signup/", {"email": "Again@example.com"})
    assert first["Location"] == second["Location"]  # the same answer, but one mail
    assert [m.to for m in mail.outbox] == [["again@example.com"]]
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert [m.to for m in mail.outbox] == [["again@example.com"], ["alice@example.com"]]


def test_the_mail_limit_fails_open_without_redis(client: Client, settings: Any, caplog: Any) -> None:
    settings.ACCOUNTS_SIGNUP_OPEN = True
    locmem = settings.CACHES
    # A cache on a closed port: a real connection failure, answered by sending the mail anyway.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }
    try:
        assert client.post("/accounts/signup/", {"email": "down@example.com"}).status_code == 302
    finally:
        settings.CACHES = locmem
    assert [m.to for m in mail.outbox] == [["down@example.com"]]
    assert "account mail limit unavailable: sending" in caplog.text
