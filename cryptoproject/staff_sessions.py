"""A short idle timeout for staff sessions: an admin's cookie is worth far more than a user's.

Django's session lasts ``SESSION_COOKIE_AGE`` (two weeks) for everyone. A staff or superuser session idle longer
than ``STAFF_SESSION_IDLE_SECONDS`` is logged out at its next request (the admin then asks for the password again);
other users' sessions are unchanged. API tokens are no sessions and are not affected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

# The session key holding the staff user's last request time (epoch seconds).
LAST_SEEN_KEY = "_staff_last_seen"


class StaffIdleTimeoutMiddleware:
    """Log out a staff session idle longer than ``STAFF_SESSION_IDLE_SECONDS``; refresh its clock otherwise.

    Goes after ``AuthenticationMiddleware`` (it reads ``request.user``) and before the views, which then see an
    anonymous user: the admin redirects to its login page, the API answers 401/403, the pages ask for a login.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Expire or stamp the session of a staff user before the view runs."""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and (user.is_staff or user.is_superuser):
            now = time.time()
            last_seen = request.session.get(LAST_SEEN_KEY)
            if isinstance(last_seen, (int, float)) and now - last_seen > settings.STAFF_SESSION_IDLE_SECONDS:
                logout(request)  # flushes the session: a new, anonymous one
            else:
                # Every staff request writes its session: staff are few, and the clock is then exact.
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
