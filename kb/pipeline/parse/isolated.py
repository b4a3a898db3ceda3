"""Parse one document in a child process forked for it, so the parser's memory leaves with the child.

Why: a worker pool process that parsed a 100-page PDF in place kept what pdfminer's page layouts,
unstructured's elements and the allocator's fragments left behind (measured: each pool process
peaked at 1.3-1.4 GB on the five largest PDFs of the shared corpus), and a parser that crashes (a
segfault in a C extension, the kernel's out-of-memory killer) took the pool process and its task. In a forked child:

- the pool process only ever holds the models it loaded at start (shared with the child until
  written) and the elements the child sends back; what the parse allocated is returned to the
  system when the child exits;
- a crash or a kill ends the child, and that one document fails with `parser_crashed` and a
  sentence a person understands; the worker and every other document carry on.

`fork` (not `spawn`): the child starts with the parsers and spaCy the pool process loaded at
warm-up, not seconds of imports (measured, same box, 5 largest shared PDFs: +2 % worker CPU over
parsing in place; peak RSS per process 1,252 MB against 1,376 MB in place). The child touches
neither the database nor the broker, and leaves with `os._exit`, so the connections it inherited
are not closed under the parent. It runs only pure-Python parsing: `parse_document`, and (through
`start_in_child`) the page ranges of a long PDF that `kb.pipeline.parse.pdf_ranges` reads at once.

The result comes back pickled through a pipe. A `ParseError` is sent as its fields (its
constructor takes keyword arguments that `Exception`'s pickling would lose).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kb.pipeline.memory import glibc
from kb.pipeline.parse.common import ParsedDocument, ParseError
from kb.pipeline.parse.locks import PARSER_LOCK

logger = logging.getLogger(__name__)

# prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


# How long after its own time limit a silent parse child is killed from outside.
_CHILD_GRACE_S = 30.0

CRASH_MESSAGE = (
    "The file reader stopped unexpectedly on this file (it crashed or ran out of memory). "
    "Try saving it again as a new PDF or splitting it into smaller files."
)


def child_parsing_available() -> bool:
    """Forking is a POSIX feature; elsewhere documents are parsed in the calling process."""
    return hasattr(os, "fork")


def parse_document_in_child(
    path: Path, *, filename: str, max_pages: int, timeout_s: float | None, processes: int = 1
) -> ParsedDocument:
    """`parse_document(path, ...)` run in a forked child; the same result or the same `ParseError`.

    A child that dies without answering becomes `ParseError("parser_crashed")`; an unexpected
    exception in the child becomes a `RuntimeError` carrying its traceback (the pipeline's
    `internal_error`). If this process is interrupted while waiting (Celery's soft time limit), the
    child is killed first.
    """
    _warm_parent()
    child = start_in_child(
        _parse_document,
        path,
        label=filename,
        filename=filename,
        max_pages=max_pages,
        timeout_s=timeout_s,
        processes=processes,
    )
    # The child stops itself at `timeout_s` with a readable reason; this is for a child that cannot.
    document: ParsedDocument = child.result(None if timeout_s is None else timeout_s + _CHILD_GRACE_S)
    return document


def _parse_document(path: Path, **kwargs: Any) -> ParsedDocument:
    # Looked up when called, in the child: the tests replace it on the package.
    from kb.pipeline.parse import parse_document

    return parse_document(path, **kwargs)


class ChildCall:
    """A function running in a forked child (`start_in_child`); `result()` waits for its answer."""

    def __init__(self, pid: int, read_end: int, label: str) -> None:
        self.pid = pid
        self.label = label
        self._read_end = read_end
        self._done = False

    def result(self, timeout_s: float | None = None) -> Any:
        """The function's return value, or its `ParseError` raised here (see `parse_document_in_child`).

        After `timeout_s` without an answer the child is killed and `ParseError("timeout")` raised:
        the last guard against a child stuck where its own time limit cannot reach (a C call
        waiting on a lock forever runs no signal handler).
        """
        self._done = True
        try:
            payload = _read_all(self._read_end, timeout_s)
        finally:
            status = _reap(self.pid)
        if payload is None:
            logger.warning("Parsing %r: no answer from the child process in %.0f s; killed it", self.label, timeout_s)
            raise ParseError(
                "timeout",
                f"Reading this file took longer than the limit of {timeout_s:.0f} seconds. "
                "Try splitting it into smaller files.",
            )
        return _result(payload, status, label=self.label)

    def stop(self) -> None:
        """Kill the child if nobody collected its result (the caller failed or gave up first)."""
        if self._done:
            return
        self._done = True
        os.close(self._read_end)
        _reap(self.pid)


def start_in_child(function: Callable[..., Any], *args: Any, label: str, **kwargs: Any) -> ChildCall:
    """Run `function(*args, **kwargs)` in a child forked now; it must return something picklable.

    The child inherits everything this process has loaded, touches neither the database nor the
    broker, and dies with this process. `label` names the work in failure messages and logs.
    """
    # The parent closes its write end before another thread forks: a sibling child holding a copy
    # would keep this pipe open, and the read in `result()` would wait for that child too.
    with PARSER_LOCK:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid != 0:
            os.close(write_end)
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child_main(write_end, function, args, kwargs)
    return ChildCall(pid, read_end, label)


@functools.cache
def _warm_parent() -> None:
    """Load the parsers and spaCy here once, so every child inherits them: what a child loads dies
    with it (measured: ~8 s per child unwarmed, ~1 s warmed). A Celery pool process has already
    warmed up (kb.tasks); this covers any other caller."""
    from kb.pipeline.parse import warm_up

    warm_up()


def _child_main(write_end: int, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    exit_code = 0
    try:
        _die_with_parent()
        # The parent's handlers (Celery's soft time limit, shutdown) must not run here.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        outcome: tuple[Any, ...]
        try:
            outcome = ("ok", function(*args, **kwargs))
        except ParseError as exc:
            outcome = ("parse_error", exc.code, exc.message, exc.detail)
        except BaseException as exc:  # everything else reaches the parent as text
            outcome = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        exit_code = 1
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        # No atexit handlers, no flushing of the parent's buffers, no closing of its connections.
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(exit_code)


def _read_all(fd: int, timeout_s: float | None) -> bytes | None:
    """Everything written to the pipe until the child closes it; None if `timeout_s` passes first.
    Closes `fd` either way."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    chunks: list[bytes] = []
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                if not selector.select(wait):
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    """Linux: if the pool process is killed (Celery's hard time limit), the kernel kills this child."""
    # The parent's cached handle: looking libc up again would run `ldconfig` in every child.
    libc = glibc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _reap(pid: int) -> int:
    """Wait for the child (killing it first if it is still running); its wait status."""
    with contextlib.suppress(ChildProcessError):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        # Still running: the parent stopped waiting for it (a time limit, an error reading the pipe).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return os.waitpid(pid, 0)[1]
    return 0


def _result(payload: bytes, status: int, *, label: str) -> Any:
    if not payload:
        how = (
            f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        logger.warning("Parsing %r: the child process ended without an answer (%s)", label, how)
        raise ParseError("parser_crashed", CRASH_MESSAGE, detail=how)
    outcome = pickle.loads(payload)  # noqa: S301 - written by our own forked child into our own pipe
    kind = outcome[0]
    if kind == "ok":
        return outcome[1]
    if kind == "parse_error":
        _, code, message, detail = outcome
        raise ParseError(code, message, detail=detail)
    _, summary, child_traceback = outcome
    raise RuntimeError(f"Parsing {label!r} failed in the child process: {summary}\n{child_traceback}")
