"""`make run`: one command that starts everything Groundwork needs for local use.

    python -m devtools.runner [--skip-setup] [--keep-services]

1. With `DATABASE_URL` / `REDIS_URL` unset, starts the embedded PostgreSQL and Redis (see
   `devtools.embedded_services`) and exports their URLs, so every child shares the same servers.
2. Runs `manage.py migrate --noinput`, then `manage.py chat_seed_demo` (demo organisation, user,
   knowledge base and a chatbot with suggested questions; prints where to log in, the playground
   and a local widget demo page) — unless `--skip-setup`.
3. Starts the commands in `default_commands()` (web, worker, beat) and interleaves their output line
   by line behind a coloured name, like foreman/honcho.
4. On Ctrl-C or SIGTERM, sends SIGTERM to every child, then SIGKILL to every child's process
   group after `STOP_TIMEOUT` seconds (or at a second Ctrl-C). If a child exits by itself, the
   others are stopped the same way and the runner exits non-zero.
5. Finally stops the embedded PostgreSQL and Redis it used (never servers given by
   `DATABASE_URL` / `REDIS_URL`), unless `--keep-services`.

Standard library only (plus `devtools.embedded_services`), so it runs before Django is importable.
Environment: `HOST` (default 127.0.0.1), `PORT` (8000), `GROUNDWORK_DATA_DIR` (`<repo>/.data`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Command:
    """A long-running process the runner supervises, shown in the output as `name`."""

    name: str
    argv: Sequence[str]


# What the product holds in memory (PSS, bench/results/footprint.json: 13 PDFs ingested while 50
# widget chats ran, PostgreSQL sized for 4 GB): web, beat, PostgreSQL, Redis, the runner and the
# worker's main process ~1.0 GB at peak; each worker pool process, with the child parsing its
# document, up to ~1.4 GB. The machine keeps the rest for the system and the page cache.
BASE_MB = 1000
POOL_PROCESS_MB = 1400
SYSTEM_RESERVE_MB = 512


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SizingError(ValueError):
    """GROUNDWORK_WORKER_CONCURRENCY is not a positive whole number."""


def worker_concurrency(*, memory: int, cpus: int, environ: Mapping[str, str]) -> int:
    """Pool processes for the worker: one per CPU, as many as the machine's memory holds (at least
    one), or GROUNDWORK_WORKER_CONCURRENCY. On a 4 GB machine that is one: two would peak near
    its whole memory while a large PDF is parsed in each."""
    raw = environ.get("GROUNDWORK_WORKER_CONCURRENCY", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise SizingError(f"GROUNDWORK_WORKER_CONCURRENCY must be a whole number of at least 1, not {raw!r}")
        return int(raw)
    fits = (memory // 2**20 - BASE_MB - SYSTEM_RESERVE_MB) // POOL_PROCESS_MB
    return max(1, min(cpus, fits))


def default_commands(*, data_dir: Path, host: str, port: str, concurrency: int | None = None) -> list[Command]:
    """The processes of a local Groundwork: web server, Celery worker and Celery beat.

    Tools run as `python -m ...` with this interpreter, so they come from the project's virtualenv
    whether or not it is activated. `concurrency`: the worker's pool processes (default: sized to
    this machine, `worker_concurrency`).
    """
    if concurrency is None:
        from devtools.pg_tuning import machine_memory

        concurrency = worker_concurrency(memory=machine_memory(), cpus=_usable_cpus(), environ=os.environ)
    python = sys.executable
    schedule = str(data_dir / "celerybeat-schedule")
    # One worker node: mingle (asking other nodes for revoked tasks at start) only waits for
    # replies that never come, ~1 s of every start; gossip serves multi-node monitoring we don't use.
    worker = [
        python, "-m", "celery", "-A", "config", "worker", "-l", "info", "--concurrency", str(concurrency),
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    return [
        Command("web", [python, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", port]),
        Command("worker", worker),
        Command("beat", [python, "-m", "celery", "-A", "config", "beat", "-l", "info", "--schedule", schedule]),
    ]


# ---------------------------------------------------------------------------------------------
# Output

_COLOURS = ["36", "33", "32", "35", "34", "91", "96", "93"]  # cyan, yellow, green, magenta, ...
SYSTEM = "system"


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


class Output:
    """Writes lines behind a `HH:MM:SS name |` prefix; names are padded to the longest one."""

    def __init__(self, names: Sequence[str], stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.colour = _use_colour(self.stream) if colour is None else colour
        self.width = max((len(n) for n in [*names, SYSTEM]), default=len(SYSTEM))
        self._colours: dict[str, str] = {SYSTEM: "1"}
        for index, name in enumerate(names):
            self._colours.setdefault(name, _COLOURS[index % len(_COLOURS)])
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        prefix = f"{datetime.now():%H:%M:%S} {name.ljust(self.width)} | "
        if self.colour:
            prefix = f"\033[{self._colours.get(name, '0')}m{prefix}\033[0m"
        with self._lock:
            self.stream.write(prefix + text.rstrip("\r\n") + "\n")
            self.stream.flush()

    def system(self, text: str) -> None:
        self.line(SYSTEM, text)


# ---------------------------------------------------------------------------------------------
# Signals


class StopRequest:
    """Set by SIGINT/SIGTERM; counts them so a second Ctrl-C can skip the grace period."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0
        self.signal_name = ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a `StopRequest` flag for the duration (main thread only)."""
    request = StopRequest()
    previous = {sig: signal.signal(sig, request.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------
# Process group


@dataclass
class _Child:
    command: Command
    popen: subprocess.Popen[bytes]
    reader: threading.Thread
    reported: bool = False


@dataclass
class _Group:
    """Children started in their own sessions, with output pumped into one queue.

    Each child leads its own process group (and session), so a Ctrl-C typed in the terminal reaches
    only the runner, which then decides the order of shutdown; and the final SIGKILL to the group
    also reaches the child's own children (Celery's pool processes, say).
    """

    output: Output
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    children: list[_Child] = field(default_factory=list)
    lines: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)

    def start(self, command: Command) -> None:
        popen = subprocess.Popen(
            list(command.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(self.env) if self.env is not None else None,
            cwd=self.cwd,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._pump, args=(command.name, popen), daemon=True)
        reader.start()
        self.children.append(_Child(command, popen, reader))

    def _pump(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            self.lines.put((name, raw.decode("utf-8", errors="replace")))
        popen.stdout.close()

    def drain(self, wait: float = 0.0) -> None:
        """Print queued lines; block up to `wait` seconds for the first one."""
        try:
            name, text = self.lines.get(timeout=wait) if wait > 0 else self.lines.get_nowait()
        except queue.Empty:
            return
        self.output.line(name, text)
        while True:
            try:
                name, text = self.lines.get_nowait()
            except queue.Empty:
                return
            self.output.line(name, text)

    def finish_output(self, child: _Child) -> None:
        """Print what an exited child wrote last. Bounded: a grandchild may still hold the pipe."""
        child.reader.join(timeout=1.0)
        self.drain()

    def exited(self) -> _Child | None:
        """A child that exited and has not been reported yet."""
        for child in self.children:
            if not child.reported and child.popen.poll() is not None:
                child.reported = True
                self.finish_output(child)
                return child
        return None

    def signal_leaders(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(sig)

    def kill_groups(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # The group outlives its leader while the leader's children still run.
                os.killpg(child.popen.pid, signal.SIGKILL)

    def stop(self, stop: StopRequest | None, timeout: float) -> None:
        """SIGTERM each child, wait up to `timeout` (printing output), then SIGKILL each whole group.

        SIGTERM goes to the child alone, as a service manager would send it: a Celery worker then
        shuts its pool down itself, while pool processes that get SIGTERM too die under it and
        leave it waiting. SIGKILL goes to the group, so no grandchild outlives the runner.
        """
        self.signal_leaders(signal.SIGTERM)
        seen = stop.count if stop is not None else 0
        deadline = time.monotonic() + timeout
        while any(c.popen.poll() is None for c in self.children):
            if time.monotonic() >= deadline:
                self.output.system(f"still running after {timeout:.0f} s: sending SIGKILL")
                break
            if stop is not None and stop.count > seen:
                self.output.system("second interrupt: sending SIGKILL")
                break
            self.drain(wait=0.05)
            self._report_exits()
        self.kill_groups()
        for child in self.children:
            child.popen.wait()
        self._report_exits()
        for child in self.children:
            self.finish_output(child)

    def _report_exits(self) -> None:
        while (child := self.exited()) is not None:
            self.output.system(f"{child.command.name} stopped ({_describe(child.popen.returncode)})")


def _describe(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def supervise(
    commands: Sequence[Command],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    output: Output | None = None,
    stop: StopRequest | None = None,
    stop_timeout: float = STOP_TIMEOUT,
) -> int:
    """Run `commands` until a stop signal (exit 0) or until one exits by itself (exit non-zero).

    Without a `stop` request the SIGINT/SIGTERM handlers are installed here (main thread only).
    """
    if stop is None:
        with stop_signals() as request:
            return supervise(commands, env=env, cwd=cwd, output=output, stop=request, stop_timeout=stop_timeout)

    output = output if output is not None else Output([c.name for c in commands])
    if not commands:
        return 0
    group = _Group(output=output, env=env, cwd=cwd)
    status = 0
    try:
        for command in commands:
            if stop.is_set():
                break
            try:
                group.start(command)
            except OSError as exc:
                output.system(f"cannot start {command.name} ({' '.join(command.argv)}): {exc}")
                status = 127
                break
            output.system(f"started {command.name} (pid {group.children[-1].popen.pid})")

        while status == 0 and not stop.is_set():
            group.drain(wait=0.1)
            child = group.exited()
            if child is not None:
                code = child.popen.returncode
                output.system(f"{child.command.name} exited unexpectedly ({_describe(code)}): stopping the others")
                status = code if code > 0 else 1
        if stop.is_set():
            output.system(f"{stop.signal_name} received: stopping")
    finally:
        group.stop(stop, stop_timeout)
    return status


def run_step(
    command: Command,
    *,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    output: Output,
    stop: StopRequest,
) -> int:
    """Run a one-off command to completion with prefixed output; its exit code (1 if interrupted)."""
    group = _Group(output=output, env=env, cwd=cwd)
    group.start(command)
    child = group.children[0]
    while child.popen.poll() is None:
        if stop.is_set():
            group.stop(stop, STOP_TIMEOUT)
            return 1
        group.drain(wait=0.1)
    group.finish_output(child)
    return child.popen.returncode


# ---------------------------------------------------------------------------------------------
# make run


def _setup_steps() -> tuple[list[Command], list[str]]:
    """Commands to run before the supervised ones, and warnings about those that were skipped."""
    python = sys.executable
    if not (REPO_ROOT / "manage.py").exists():
        return [], ["manage.py not found: skipping migrate and the demo data"]
    steps = [
        Command("migrate", [python, "manage.py", "migrate", "--noinput"]),
        Command("demo", [python, "manage.py", "chat_seed_demo"]),
    ]
    return steps, []


def main(argv: Sequence[str] | None = None, *, commands: Sequence[Command] | None = None) -> int:
    """`make run`. `commands` replaces `default_commands()` (tests, other layouts)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.runner", description="Start Groundwork's web server, worker and beat."
    )
    parser.add_argument("--skip-setup", action="store_true", help="do not run migrate and the demo seeding first")
    parser.add_argument(
        "--keep-services", action="store_true", help="leave the embedded PostgreSQL and Redis running at exit"
    )
    args = parser.parse_args(argv)

    from devtools import embedded_services

    env = dict(os.environ)
    data_dir = embedded_services.data_dir_from_env(env)
    env["GROUNDWORK_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"  # children's lines arrive when written, not when a buffer fills
    if commands is None:
        try:
            host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
            commands = default_commands(data_dir=data_dir, host=host, port=port)
        except SizingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    output = Output(["migrate", "demo", *[c.name for c in commands]])

    to_stop: list[tuple[str, Callable[[Path], bool]]] = []
    with stop_signals() as stop:
        try:
            if not env.get("DATABASE_URL"):
                output.system(f"starting the embedded PostgreSQL in {data_dir / 'postgres'}")
                env["DATABASE_URL"] = embedded_services.ensure_postgres(data_dir)
                to_stop.append(("PostgreSQL", embedded_services.stop_postgres))
            if not env.get("REDIS_URL"):
                output.system(f"starting the embedded Redis in {data_dir / 'redis'}")
                env["REDIS_URL"] = embedded_services.ensure_redis(data_dir)
                to_stop.append(("Redis", embedded_services.stop_redis))

            if not args.skip_setup:
                steps, warnings = _setup_steps()
                for warning in warnings:
                    output.system(f"warning: {warning}")
                for step in steps:
                    if stop.is_set():
                        return 0
                    code = run_step(step, env=env, cwd=REPO_ROOT, output=output, stop=stop)
                    if stop.is_set():
                        return 0
                    if code != 0:
                        output.system(f"{step.name} failed ({_describe(code)}): not starting the servers")
                        return code if code > 0 else 1

            if stop.is_set():
                return 0
            return supervise(commands, env=env, cwd=REPO_ROOT, output=output, stop=stop)
        except embedded_services.EmbeddedServiceError as exc:
            output.system(f"error: {exc}")
            return 1
        finally:
            if args.keep_services:
                if to_stop:
                    output.system("leaving the embedded services running (--keep-services)")
            else:
                for label, stop_service in reversed(to_stop):
                    try:
                        if stop_service(data_dir):
                            output.system(f"stopped the embedded {label}")
                    except embedded_services.EmbeddedServiceError as exc:
                        output.system(f"error: {exc}")


if __name__ == "__main__":
    sys.exit(main())
