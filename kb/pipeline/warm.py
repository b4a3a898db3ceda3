"""What a worker pool process has loaded yet: a document waits only for what its format needs.

A pool process loads its models in a background thread after forking (`start_in_background`,
called by kb.tasks), in the order documents need them:

1. `core`: the embedding model (LiteLLM and ONNX, ~5 s of CPU) and the plain-text parser
   (unstructured's tokenizer, spaCy, `partition_text`): every document needs the first, a
   plain-text file nothing else;
2. `complete`: the other formats' parsers (the PDF stack alone imports for ~4 s).

Tasks wait for `core`; the parse stage waits for `complete` unless the file is small plain text,
which it parses in its own process. Anything else is parsed in a forked child, and a child forked
while this thread is importing could inherit a held import lock and hang: it waits.

Outside a pool process (tests, eager calls, the web process) nothing loads in the background and
nothing waits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class WarmUp:
    def __init__(self) -> None:
        self.started = False
        self.core = threading.Event()
        self.complete = threading.Event()

    def start(self, core: Callable[[], None], rest: Callable[[], None]) -> None:
        """Run `core`, then `rest`, in a daemon thread; a failure is logged and the stages still end
        (a broken install: the document fails with the real error when it needs the part)."""
        self.started = True
        self.core.clear()
        self.complete.clear()
        threading.Thread(target=self._run, args=(core, rest), name="groundwork-warm-up", daemon=True).start()

    def _run(self, core: Callable[[], None], rest: Callable[[], None]) -> None:
        try:
            for stage, done in ((core, self.core), (rest, self.complete)):
                try:
                    stage()
                except Exception:
                    logger.exception("Warming up the parsers and the embedding model failed")
                    return
                finally:
                    done.set()
        finally:
            self.core.set()
            self.complete.set()

    def wait_for_core(self) -> None:
        if self.started:
            self.core.wait()

    def wait_for_everything(self) -> None:
        if self.started:
            self.complete.wait()


_warm_up = WarmUp()


def _core() -> None:
    from kb.pipeline import embed, parse

    embed.warm_up()
    parse.warm_up_text()


def _rest() -> None:
    from kb.pipeline import parse

    parse.warm_up_formats()


def start_in_background() -> None:
    """In a freshly forked pool process: load the embedder and the parsers, core first."""
    _warm_up.start(_core, _rest)


def wait_for_core() -> None:
    """Before embedding (every task that ingests or re-embeds)."""
    _warm_up.wait_for_core()


def wait_for_everything() -> None:
    """Before parsing anything but small plain text, and before forking a parse child."""
    _warm_up.wait_for_everything()
