"""WSGI entry point (the ASGI one in ``asgi.py`` is what the project serves with daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")

application = get_wsgi_application()
