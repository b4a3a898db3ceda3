"""The test session's embedded PostgreSQL and Redis, started before pytest-django loads settings.

Registered with `-p devtools.pytest_plugin` (pyproject's addopts). Settings only name the servers;
this plugin starts the ones `DATABASE_URL` / `REDIS_URL` do not point elsewhere, exports their URLs
for the session (and the subprocesses it spawns), and stops at the end of the session the servers
it started, so a test run leaves no server behind. Servers it found running are left running.
"""

from __future__ import annotations

import os

import pytest

from devtools.embedded_services import start_unless_configured


# tryfirst, and registered (by `-p`) before the plugins installed as packages, so this runs after
# pytest-env has set GROUNDWORK_DATA_DIR (its hook is tryfirst too, and registered later: pluggy
# calls the later one first) and before pytest-django's plain hook imports the settings.
@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    services = start_unless_configured(os.environ)
    early_config.add_cleanup(services.stop)
