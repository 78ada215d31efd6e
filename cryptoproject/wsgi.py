"""WSGI entry point (the ASGI one in ``asgi.py`` is what the project serves with daphne)."""

import os

from django.core.wsgi import get_wsgi_application
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

application = get_wsgi_application()

from dashboard.checks import refuse_known_passwords  # noqa: E402 - needs the apps loaded

# As in asgi.py: no production start while the demo account's published password works.
refuse_known_passwords()
connections.close_all()
