"""ASGI entry point: HTTP through Django, WebSockets through Channels (served by daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

# Django must be set up before anything imports models (the routing does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.db import connections  # noqa: E402

from cryptoproject.body_limit import BodyLimitASGIMiddleware  # noqa: E402
from dashboard.checks import refuse_known_passwords  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402
from notifications.routing import websocket_urlpatterns as notification_urlpatterns  # noqa: E402

# Production never serves a sign-in page while the demo account's published password works (DEBUG: no query).
refuse_known_passwords()
connections.close_all()  # the guard's connection belongs to this start-up thread, never to a request

# The dashboard's list ends with a catch-all (4404): the other apps' routes come first.
routes = [*notification_urlpatterns, *websocket_urlpatterns]

application = ProtocolTypeRouter(
    {
        # Bodies over REQUEST_BODY_MAX_BYTES (declared or chunked) are refused before Django buffers them.
        "http": BodyLimitASGIMiddleware(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(routes))),
    }
)
