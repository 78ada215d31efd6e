"""Settings for the test suite: the project's settings in local-development mode, explicitly.

``DJANGO_DEBUG`` defaults to false (production), so the suite sets it, before the settings are read. It goes into
``os.environ``, so the child processes the tests start (workers, commands) run in the same mode.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")

from cryptoproject.settings import *  # noqa: F403

# django-axes refuses authenticate() calls without a request, which Django's test client.login() makes; the
# lockout tests switch it on (AXES_ENABLED is read per request).
AXES_ENABLED = False
