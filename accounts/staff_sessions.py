"""A short idle timeout for staff sessions: an admin's cookie is worth far more than a user's.

Django's session lasts ``SESSION_COOKIE_AGE`` (two weeks) for everyone. A staff or superuser session idle longer
than ``STAFF_SESSION_IDLE_SECONDS`` is logged out at its next request (the admin then asks for the password again);
other users' sessions are unchanged. API tokens are no sessions and are not affected.

The clock is set at sign-in (the session is written then anyway) and moved at most every tenth of the idle period
(at most a minute), so a staff request writes its session only now and then: an idle session may end up to that much
early, never late.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

# The session key holding the staff user's last request time (epoch seconds), as last written.
LAST_SEEN_KEY = "_staff_last_seen"


def _is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and (user.is_staff or user.is_superuser))


@receiver(user_logged_in)
def start_staff_clock(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Stamp a staff sign-in's session (saved with the sign-in), so its first requests need no write."""
    if request is not None and hasattr(request, "session") and _is_staff(user):
        request.session[LAST_SEEN_KEY] = time.time()


class StaffIdleTimeoutMiddleware:
    """Log out a staff session idle longer than ``STAFF_SESSION_IDLE_SECONDS``; move its clock otherwise.

    Goes after ``AuthenticationMiddleware`` (it reads ``request.user``) and before the views, which then see an
    anonymous user: the admin redirects to its login page, the API answers 401/403, the pages ask for a login.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Expire or stamp the session of a staff user before the view runs."""
        if _is_staff(getattr(request, "user", None)):
            idle = settings.STAFF_SESSION_IDLE_SECONDS
            now = time.time()
            last_seen = request.session.get(LAST_SEEN_KEY)
            if not isinstance(last_seen, (int, float)):
                request.session[LAST_SEEN_KEY] = now  # a session from before this guard: its clock starts now
            elif now - last_seen > idle:
                logout(request)  # flushes the session: a new, anonymous one
            elif now - last_seen >= min(60.0, idle / 10):
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
