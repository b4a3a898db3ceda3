"""The grouping rule of the knowledge-gap inbox: greedy leader clustering over question embeddings.

Questions are taken oldest first. Each joins the open group whose centroid is most similar to it
(cosine of the question's unit vector and the centroid) when that similarity is at least
`SIMILARITY`; otherwise it starts a new group, of which it is the first member. A group's
centroid is the running mean of its members' unit vectors. Its label is the member closest to the
centroid (the most central wording; a wording asked several times pulls the centroid its way, so
frequent wordings win).

Why 0.75: with the offline embedding model (all-MiniLM-L6-v2), paraphrases of one question
measure 0.70–0.92 against each other ("Can I pay with PayPal?" / "Do you accept PayPal payments?"
0.83, "Do you ship to Canada?" / "Can you deliver to Canada?" 0.80, "How do I reset my password?" /
"I forgot my password, how can I change it?" 0.89) and higher against a group's centroid, while
different questions of the same shop stay below 0.45 ("Can I pay with PayPal?" / "Can I buy a gift
voucher?" 0.42). A hosted embedding model with another scale may need another value.

Greedy and order-dependent by design: groups never merge or split later, so a group a member of
staff is looking at does not reshuffle under them, and adding a question costs one comparison per
open group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

SIMILARITY = 0.75

T = TypeVar("T")


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else [0.0 for _ in vector]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return 0.0
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


@dataclass
class Cluster(Generic[T]):
    """A group being built: its running-mean centroid and the members added in this pass."""

    centroid: list[float]
    weight: int
    key: T | None = None  # the stored group it stands for (None: a new group)
    added: list[int] = field(default_factory=list)  # indexes into the vectors passed to `assign`

    def add(self, index: int, vector: Sequence[float]) -> None:
        total = self.weight + 1
        self.centroid = [(c * self.weight + v) / total for c, v in zip(self.centroid, vector, strict=True)]
        self.weight = total
        self.added.append(index)


def assign(clusters: list[Cluster[T]], vectors: Sequence[Sequence[float]], *, threshold: float = SIMILARITY) -> None:
    """Add each vector (in order) to the most similar cluster at or above `threshold`, or to a new
    cluster appended to `clusters`. Vectors should be unit length (see `unit`)."""
    for index, vector in enumerate(vectors):
        best, best_score = None, threshold
        for cluster in clusters:
            score = cosine(vector, cluster.centroid)
            if score >= best_score:
                best, best_score = cluster, score
        if best is None:
            best = Cluster(centroid=[0.0] * len(vector), weight=0)
            clusters.append(best)
        best.add(index, vector)


def most_central(centroid: Sequence[float], members: Sequence[tuple[str, Sequence[float]]]) -> str:
    """The member text whose vector is closest to `centroid` (the first such on ties)."""
    best_text, best_score = "", -2.0
    for text, vector in members:
        score = cosine(vector, centroid)
        if score > best_score:
            best_text, best_score = text, score
    return best_text
