"""Signal receivers of the dashboard: logging out closes that session's open WebSockets."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest
from redis.exceptions import RedisError

from cryptoproject.sockets import LOGOUT_EVENT, session_group

logger = logging.getLogger(__name__)


@receiver(user_logged_out, dispatch_uid="dashboard.close_sockets_on_logout")
def close_sockets_on_logout(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Tell the sockets of the session being logged out to close (Django sends this before it flushes the session).

    A channel layer that does not answer must not stop the logout: it is logged, and those sockets end with their
    connection instead.
    """
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    layer = get_channel_layer()
    if not session_key or layer is None:
        return
    try:
        async_to_sync(layer.group_send)(session_group(session_key), {"type": LOGOUT_EVENT})
    except (RedisError, OSError) as exc:
        logger.warning("logout: could not close the session's sockets", extra={"error": repr(exc)})
