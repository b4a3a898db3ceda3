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
are not closed under the parent. It runs only the pure-Python `parse_document`.

The result comes back pickled through a pipe. A `ParseError` is sent as its fields (its
constructor takes keyword arguments that `Exception`'s pickling would lose).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from kb.pipeline.memory import glibc
from kb.pipeline.parse.common import ParsedDocument, ParseError

logger = logging.getLogger(__name__)

# prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1

# One fork at a time per process: filelock (imported by unstructured's dependencies) refuses an
# `os.fork` while another thread of the process is inside its own fork, and a worker with a thread
# pool forks from several threads.
_FORK_LOCK = threading.Lock()

CRASH_MESSAGE = (
    "The file reader stopped unexpectedly on this file (it crashed or ran out of memory). "
    "Try saving it again as a new PDF or splitting it into smaller files."
)


def child_parsing_available() -> bool:
    """Forking is a POSIX feature; elsewhere documents are parsed in the calling process."""
    return hasattr(os, "fork")


def parse_document_in_child(path: Path, *, filename: str, max_pages: int, timeout_s: float | None) -> ParsedDocument:
    """`parse_document(path, ...)` run in a forked child; the same result or the same `ParseError`.

    A child that dies without answering becomes `ParseError("parser_crashed")`; an unexpected
    exception in the child becomes a `RuntimeError` carrying its traceback (the pipeline's
    `internal_error`). If this process is interrupted while waiting (Celery's soft time limit), the
    child is killed first.
    """
    _warm_parent()
    # The parent closes its write end before another thread forks: a sibling child holding a copy
    # would keep this pipe open, and the read below would wait for that child too.
    with _FORK_LOCK:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid != 0:
            os.close(write_end)
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child_main(write_end, path, filename=filename, max_pages=max_pages, timeout_s=timeout_s)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read()
    finally:
        status = _reap(pid)
    return _result(payload, status, filename=filename)


@functools.cache
def _warm_parent() -> None:
    """Load the parsers and spaCy here once, so every child inherits them: what a child loads dies
    with it (measured: ~8 s per child unwarmed, ~1 s warmed). A Celery pool process has already
    warmed up (kb.tasks); this covers any other caller."""
    from kb.pipeline.parse import warm_up

    warm_up()


def _child_main(write_end: int, path: Path, *, filename: str, max_pages: int, timeout_s: float | None) -> None:
    exit_code = 0
    try:
        _die_with_parent()
        # The parent's handlers (Celery's soft time limit, shutdown) must not run here.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        from kb.pipeline.parse import parse_document

        outcome: tuple[Any, ...]
        try:
            document = parse_document(path, filename=filename, max_pages=max_pages, timeout_s=timeout_s)
            outcome = ("ok", document)
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


def _result(payload: bytes, status: int, *, filename: str) -> ParsedDocument:
    if not payload:
        how = (
            f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        logger.warning("Parsing %r: the child process ended without an answer (%s)", filename, how)
        raise ParseError("parser_crashed", CRASH_MESSAGE, detail=how)
    outcome = pickle.loads(payload)  # noqa: S301 - written by our own forked child into our own pipe
    kind = outcome[0]
    if kind == "ok":
        document: ParsedDocument = outcome[1]
        return document
    if kind == "parse_error":
        _, code, message, detail = outcome
        raise ParseError(code, message, detail=detail)
    _, summary, child_traceback = outcome
    raise RuntimeError(f"Parsing {filename!r} failed in the child process: {summary}\n{child_traceback}")
