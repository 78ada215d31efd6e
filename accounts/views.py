"""The accounts pages: sign-up, invitations, API tokens and the watchlist (password pages are Django's own views,
wired in :mod:`accounts.urls` with the project's templates)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required, user_passes_test
from django.contrib.auth.forms import SetPasswordForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import signup as accounts_signup
from accounts import tokens, watchlist
from accounts.forms import EmailForm, TokenForm, WatchlistAddForm
from accounts.models import Invitation
from accounts.quotas import QuotaExceeded

# The model backend (accounts.backends), named for login() after an account is created (no password check names it).
MODEL_BACKEND = "accounts.backends.CaseInsensitiveModelBackend"
INVITATION_LIST_SIZE = 50


def _page(request: HttpRequest, template: str, page: str, status: int = 200, **context: Any) -> HttpResponse:
    return render(request, template, {"page": page, **context}, status=status)


def _new_user(email: str) -> Any:
    """An unsaved user for ``email``, so the password validators can compare the password with the address."""
    return get_user_model()(username=accounts_signup.normalise_email(email), email=email)


@never_cache
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Ask for an address and mail it a link; closed (403) unless ``ACCOUNTS_SIGNUP_OPEN``."""
    if not settings.ACCOUNTS_SIGNUP_OPEN:
        return _page(request, "accounts/signup_closed.html", "signup", status=403)
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        accounts_signup.request_signup(request, form.cleaned_data["email"])
        return redirect("accounts:signup_sent")
    return _page(request, "accounts/signup.html", "signup", form=form)


def signup_sent(request: HttpRequest) -> HttpResponse:
    """The same answer whether or not the address has an account."""
    return _page(request, "accounts/signup_sent.html", "signup")


@never_cache
@require_http_methods(["GET", "POST"])
def signup_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Choose a password from the mailed link; the account is created and signed in."""
    if not settings.ACCOUNTS_SIGNUP_OPEN:
        return _page(request, "accounts/signup_closed.html", "signup", status=403)
    email = accounts_signup.email_of_signup_token(token)
    if email is None:
        return _page(request, "accounts/link_invalid.html", "signup", status=404)
    return _set_password_page(request, email, lambda user: accounts_signup.create_account(email, user))


def _set_password_page(request: HttpRequest, email: str, create: Any) -> HttpResponse:
    form = SetPasswordForm(_new_user(email), request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = create(form.save(commit=False))
        except (accounts_signup.AccountExistsError, accounts_signup.InvitationInvalidError):
            return _page(request, "accounts/link_invalid.html", "signup", status=404)
        login(request, user, backend=MODEL_BACKEND)
        return redirect("dashboard:me")
    return _page(request, "accounts/set_password.html", "signup", form=form, email=email)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation (open or closed sign-up alike): choose a password, the account is created."""
    found = accounts_signup.usable_invitation(token)
    if found is None:
        return _page(request, "accounts/link_invalid.html", "signup", status=404)
    return _set_password_page(request, found.email, lambda user: accounts_signup.accept_invitation(token, user))


@never_cache
@login_required
@user_passes_test(lambda user: user.is_staff)
@require_http_methods(["GET", "POST"])
def invitations(request: HttpRequest) -> HttpResponse:
    """Staff: invite an address (the link is mailed, and shown here once) and see the latest invitations."""
    form = EmailForm(request.POST or None)
    link = None
    if request.method == "POST" and form.is_valid():
        created, token = accounts_signup.create_invitation(form.cleaned_data["email"], request.user)
        accounts_signup.send_invitation(request, created, token)
        link = accounts_signup.invitation_url(request, token)
        form = EmailForm()
    rows = list(Invitation.objects.select_related("created_by", "used_by")[:INVITATION_LIST_SIZE])
    return _page(request, "accounts/invitations.html", "invitations", form=form, link=link, invitations=rows)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The user's API tokens; POST creates one and shows its secret on this answer only."""
    form = TokenForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _, secret = tokens.create_token(
                request.user, form.cleaned_data["name"], form.cleaned_data["expires_in_days"]
            )
            form = TokenForm()
        except tokens.TokenError as exc:
            form.add_error(exc.param, exc.message)
        except QuotaExceeded as exc:
            form.add_error(None, exc.message)
    rows = [tokens.token_item(t) for t in tokens.user_tokens(request.user)]
    return _page(request, "accounts/tokens.html", "tokens", form=form, secret=secret, tokens=rows)


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's tokens (another user's is a 404)."""
    if not tokens.revoke_token(request.user, token_id):
        raise Http404("no such token")
    messages.success(request, "Token revoked.")
    return redirect("accounts:tokens")


@login_required
@require_http_methods(["GET", "POST"])
def watchlist_page(request: HttpRequest) -> HttpResponse:
    """The watchlist: add a market, remove one, move one up or down."""
    form = WatchlistAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            watchlist.add(request.user, form.cleaned_data["exchange"], form.cleaned_data["symbol"])
            return redirect("accounts:watchlist")
        except watchlist.WatchlistError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        except QuotaExceeded as exc:
            form.add_error(None, exc.message)
    return _page(
        request,
        "accounts/watchlist.html",
        "watchlist",
        form=form,
        items=watchlist.items(request.user),
        limit=settings.ACCOUNTS_MAX_WATCHLIST,
    )


@login_required
@require_POST
def watchlist_item(request: HttpRequest, item_id: int) -> HttpResponse:
    """``action`` remove, up or down on one of the user's items (another user's is a 404)."""
    action = request.POST.get("action", "")
    if action == "remove":
        done = watchlist.remove(request.user, item_id)
    elif action in ("up", "down"):
        done = watchlist.move(request.user, item_id, -1 if action == "up" else 1)
    else:
        return HttpResponse("unknown action", status=400, content_type="text/plain")
    if not done:
        raise Http404("no such watchlist item")
    return redirect("accounts:watchlist")
