#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

With `DATABASE_URL` / `REDIS_URL` unset, a command needs the embedded PostgreSQL / Redis of
`GROUNDWORK_DATA_DIR`: it reuses them when they run (under `make run`, say) and otherwise starts
them for the length of the command, so `manage.py makemigrations --check` leaves nothing running.
"""

import os
import signal
import sys
from types import FrameType


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so the servers this command started are stopped on the way out.
    sys.exit(128 + signum)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    services = None
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from devtools.embedded_services import start_unless_configured

        services = start_unless_configured(os.environ)
        if services.names:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    finally:
        if services is not None:
            services.stop()


if __name__ == "__main__":
    main()
