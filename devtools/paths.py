"""Where the embedded PostgreSQL and Redis of a data folder live, and the URLs that reach them.

Pure computation (plus reading PostgreSQL's own pid file): nothing here starts, stops or connects
to anything, so Django settings can import it to name the servers without starting them. The
processes that do start them (`devtools.runner`, `manage.py`, the test session) use the same
functions, so every process of a data folder agrees on the URLs.

Standard library only: it runs before Django or any project package is importable.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "groundwork"
POSTGRES_USER = "postgres"
# PostgreSQL names its socket file after the port; the embedded server keeps the default.
DEFAULT_POSTGRES_PORT = 5432

REPO_ROOT = Path(__file__).resolve().parent.parent
# Linux allows 108 bytes for a Unix socket path, macOS 104; stay below both.
MAX_SOCKET_PATH = 100


class EmbeddedServiceError(RuntimeError):
    """An embedded PostgreSQL or Redis could not be started, reached or stopped.

    The message says what failed and what the user can do (usually: look at a log file, or point
    `DATABASE_URL` / `REDIS_URL` at a server of their own).
    """


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """`GROUNDWORK_DATA_DIR` as an absolute path, defaulting to `<repo>/.data`."""
    env = os.environ if environ is None else environ
    raw = env.get("GROUNDWORK_DATA_DIR") or str(REPO_ROOT / ".data")
    return Path(raw).expanduser().resolve()


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class Postmaster:
    """The parts of PGDATA/postmaster.pid we use."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping" (empty while the file is half written)


def read_postmaster(pgdata: Path) -> Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else DEFAULT_POSTGRES_PORT
    except (IndexError, ValueError):
        return None
    if pid <= 0:
        # A negative pid is a standalone backend: initdb is bootstrapping the cluster right now.
        return None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=status)


def postgres_url(socket_dir: Path | None, port: int = DEFAULT_POSTGRES_PORT, database: str = DATABASE_NAME) -> str:
    if socket_dir is None:
        raise EmbeddedServiceError("The embedded PostgreSQL has no Unix socket; stop it and start it again.")
    # The port is in the URL because it names the socket file (.s.PGSQL.<port>): without it libpq
    # would use $PGPORT when set.
    host = quote(str(socket_dir), safe="/")
    return f"postgresql://{POSTGRES_USER}@:{port}/{database}?host={host}"


def embedded_postgres_url(data_dir: Path) -> str:
    """The URL of the embedded PostgreSQL of `data_dir`, whether or not it runs.

    The server puts its socket in PGDATA (`<data_dir>/postgres`) unless that path is too long for a
    socket; then embedded_postgres picks a runtime folder, which only its pid file tells. So the
    pid file, when there is one, has the last word.
    """
    pgdata = Path(data_dir).expanduser().resolve() / "postgres"
    postmaster = read_postmaster(pgdata)
    if postmaster is not None and postmaster.socket_dir is not None:
        return postgres_url(postmaster.socket_dir, postmaster.port)
    return postgres_url(pgdata)


# ---------------------------------------------------------------------------------------------
# Redis


@dataclass(frozen=True)
class RedisPaths:
    directory: Path
    socket: Path
    pidfile: Path
    logfile: Path


def redis_paths(data_dir: Path) -> RedisPaths:
    directory = data_dir / "redis"
    sock = directory / "redis.sock"
    if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
        # Too long for a Unix socket: use a short private folder named after the data folder.
        digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
        sock = Path(tempfile.gettempdir()) / f"groundwork-{os.getuid()}-{digest}" / "redis.sock"
    return RedisPaths(directory, sock, directory / "redis.pid", directory / "redis.log")


def redis_url(paths: RedisPaths) -> str:
    return f"unix://{quote(str(paths.socket), safe='/')}"


def embedded_redis_url(data_dir: Path) -> str:
    """The redis-py URL of the embedded Redis of `data_dir`, whether or not it runs."""
    return redis_url(redis_paths(Path(data_dir).expanduser().resolve()))
