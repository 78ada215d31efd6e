"""Login lockout (django-axes) per username and address, and per address alone at a higher limit.

django-axes counts one ``AXES_FAILURE_LIMIT`` against each of its lockout parameters, so a second, higher limit for
the address alone needs this handler: after ``AXES_ADDRESS_FAILURE_LIMIT`` failures from one address within
``AXES_COOLOFF_MINUTES``, whatever the usernames, that address is locked out for every name. The address is
:func:`cryptoproject.security.lockout_address`: an IPv6 client counts by its /64, which one subscriber holds whole.
The username is counted lower-cased (:func:`lockout_username`): sign-in accepts any case
(``accounts.backends``), so ``Erin``, ``erin`` and ``ERIN`` are one name to the lockout too.
"""

from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum


def lockout_username(request: Any, credentials: dict[str, Any] | None = None) -> str | None:
    """The name django-axes counts failures against (``AXES_USERNAME_CALLABLE``): the submitted username, stripped
    and lower-cased, from the credentials or else the posted form (axes' own order)."""
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")
    name = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    return name.strip().lower() if isinstance(name, str) else name


class AddressLockoutHandler(AxesDatabaseHandler):
    """django-axes' database handler, plus the per-address limit ``AXES_ADDRESS_FAILURE_LIMIT``."""

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        """The (username, address) pair's failures, or at least the lockout limit once the address alone has
        failed ``AXES_ADDRESS_FAILURE_LIMIT`` times within the cool-off (so that axes refuses every name from it)."""
        failures = int(super().get_failures(request, credentials))
        address = getattr(request, "axes_ip_address", None)
        if not address:
            return failures
        from_address = (
            AccessAttempt.objects.filter(ip_address=address, attempt_time__gte=get_cool_off_threshold(request))
            .aggregate(total=Sum("failures_since_start"))
            .get("total")
            or 0
        )
        if from_address >= settings.AXES_ADDRESS_FAILURE_LIMIT:
            return max(failures, int(get_failure_limit(request, credentials)))
        return failures
