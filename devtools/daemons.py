"""Process plumbing shared by the embedded PostgreSQL and Redis: a cross-process lock, telling our
daemons apart from other processes, stopping them, and stopping at exit what this process started.

Unix only (`fcntl`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from devtools.paths import EmbeddedServiceError

LOCK_TIMEOUT = 180.0


@contextlib.contextmanager
def file_lock(path: Path, *, what: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
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


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir).expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServiceError(
            f"Cannot create the data folder {data_dir}: {exc}. Set GROUNDWORK_DATA_DIR to a writable folder."
        ) from exc
    return data_dir


def process_in_dir(pid: int, directory: Path, name: str) -> psutil.Process | None:
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


def pid_is_foreign(pid: int, directory: Path, name: str) -> bool:
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


def terminate(proc: psutil.Process, signals: list[tuple[signal.Signals, float]]) -> bool:
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


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def register_stop_at_exit(stop: Callable[[Path], bool], data_dir: Path) -> None:
    owner = os.getpid()

    def stop_if_owner() -> None:
        # A forked child (a Celery pool process, say) inherits atexit hooks: only the process that
        # started the server may stop it.
        if os.getpid() == owner:
            with contextlib.suppress(EmbeddedServiceError):
                stop(data_dir)

    atexit.register(stop_if_owner)
