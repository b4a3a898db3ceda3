"""What a worker pool process has loaded yet: a document waits only for what it needs next.

A pool process loads its models in a background thread after forking (`start_in_background`,
called by kb.tasks), in the order documents need them:

1. `text`: the plain-text and Markdown parsers (unstructured's tokenizer, spaCy, `partition_text`,
   `partition_md`, ~3.5 s of CPU);
2. `embedder`: the embedding model (LiteLLM and ONNX, ~7 s of CPU, most of it `import litellm`);
3. `complete`: the other formats' parsers (the PDF stack alone imports for ~4 s).

So a small text or Markdown file that a free pool process takes just after the worker starts is
parsed, chunked and searchable by its words (`kb.pipeline.publish.publish_words_first`, while
`embedder_loading()`) seconds before the model could embed it; the embed stage waits for
`embedder`. The parse stage waits for `text` when the file is small plain text or Markdown, which
it parses in its own process, and for `complete` otherwise: anything else is parsed in a forked
child, and a child forked while this thread is importing could inherit a held import lock and hang.

Outside a pool process (tests, eager calls, the web process) nothing loads in the background and
nothing waits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)


class WarmUp:
    def __init__(self) -> None:
        self.started = False
        self.text = threading.Event()
        self.embedder = threading.Event()
        self.complete = threading.Event()

    @property
    def _events(self) -> tuple[threading.Event, ...]:
        return (self.text, self.embedder, self.complete)

    def start(self, stages: Sequence[Callable[[], None]]) -> None:
        """Run the three stages in order in a daemon thread, setting `text`, `embedder` and
        `complete` as each ends. A failure is logged and every stage still ends (a broken install:
        the document fails with the real error when it needs the part)."""
        if len(stages) != len(self._events):
            raise ValueError(f"expected {len(self._events)} warm-up stages, got {len(stages)}")
        self.started = True
        for event in self._events:
            event.clear()
        threading.Thread(target=self._run, args=(stages,), name="groundwork-warm-up", daemon=True).start()

    def _run(self, stages: Sequence[Callable[[], None]]) -> None:
        try:
            for stage, done in zip(stages, self._events, strict=True):
                try:
                    stage()
                except Exception:
                    logger.exception("Warming up the parsers and the embedding model failed")
                    return
                finally:
                    done.set()
        finally:
            for event in self._events:
                event.set()

    def wait(self, event: threading.Event) -> None:
        if self.started:
            event.wait()

    def loading(self, event: threading.Event) -> bool:
        return self.started and not event.is_set()


_warm_up = WarmUp()


def _text() -> None:
    from kb.pipeline import parse

    parse.warm_up_text()


def _embedder() -> None:
    from kb.pipeline import embed

    embed.warm_up()


def _formats() -> None:
    from kb.pipeline import parse

    parse.warm_up_formats()


def start_in_background() -> None:
    """In a freshly forked pool process: load the text parser, the embedder, then the other parsers."""
    _warm_up.start((_text, _embedder, _formats))


def wait_for_text_parser() -> None:
    """Before parsing small plain text or Markdown in this process."""
    _warm_up.wait(_warm_up.text)


def wait_for_embedder() -> None:
    """Before embedding anything (the embed stage, re-embedding, ranking vectors)."""
    _warm_up.wait(_warm_up.embedder)


def embedder_loading() -> bool:
    """True while this pool process is still loading its embedding model."""
    return _warm_up.loading(_warm_up.embedder)


def wait_for_everything() -> None:
    """Before parsing anything else, and before forking a parse child."""
    _warm_up.wait(_warm_up.complete)
