#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")
    from django.core.management import execute_from_command_line
    from django.db.utils import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as exc:
        # Any command that meets a closed PostgreSQL (backtest, train_model, DRF's drf_create_token...) says so in
        # one line naming the setting, as CommandError does; other database errors keep their traceback.
        from cryptoproject.preflight import database_down

        message = database_down(exc)
        if message is None or "--traceback" in sys.argv:
            raise
        sys.stderr.write(f"CommandError: {message}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
